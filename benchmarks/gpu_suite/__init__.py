"""The whole project measured on one GPU in one go: `python -m benchmarks.gpu_suite --data DIR --output_dir OUT`.

| module | what |
|---|---|
| `suite` | the command: sizes, budgets, the stages in order, a failing stage recorded and the next one run |
| `cfg_stages` | the conditional DDPM: old against new timing, training to a wall-time budget, sampling and scoring |
| `dann_and_face_stages` | both DANN recipes through train_dann's command line; a better face model for DDIM |
| `face_count` | how many generated images are faces (nearest training face correlation) |
| `summary` | the environment record and OUT/summary.md, OUT/summary.json |
| `make_data` | the data subset that travels to a GPU machine (`python -m benchmarks.gpu_suite.make_data`) |
"""
