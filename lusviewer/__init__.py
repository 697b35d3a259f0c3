"""lusviewer: lung-ultrasound severity scoring with a hybrid CNN-LSTM.

Research software, not a medical device.
"""

__version__ = "0.1.0"
