"""The parts of `train_digit_classifier.py`, whose loop stays in the script: `output.py` writes the model folder
(card, metrics, confusion matrix). Its data and augmentation come from training/dann/data.py."""
