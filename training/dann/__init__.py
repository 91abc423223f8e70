"""The parts of `train_dann.py`, whose loop stays in the script (each mode's loss terms are read there).

args.py        its flags, checked before any data is read
data.py        digit splits decoded once into device tensors, and batched augmentation on them
               (also the augmentation of `train_digit_classifier.py`)
methods.py     the loss terms of each mode and the mean teacher's update
evaluation.py  accuracy, AdaBN, temperature scaling, calibration error after training
output.py      the model card and the Hub-style folder of a run
"""
