"""The diffusion training of `train_cfg.py` (class-conditional, classifier-free guidance) and `train_ddpm.py`
(unconditional): one loop (`loop.py`) and its parts.

    args.py         the flags of both scripts, the UNet and the noise schedule they describe
    step.py         one DDPM training step, with its randomness drawn from (seed, process, micro-step)
    samples.py      the sample grids of the logs and of the exported folder, and the time budget
    export.py       the end of a run: summary, the Hub-style folder written whole, the upload
    cards.py        the model card of each kind of folder, built from the folder's records

Shared with the other training scripts: training/checkpoints.py (checkpoint-N folders for exact resume, without
pickle) and training/run_folder.py (which run a folder belongs to; publishing beside the user's files).
"""
