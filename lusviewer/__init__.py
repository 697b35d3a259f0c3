"""lusviewer: lung-ultrasound severity scoring with a hybrid CNN-LSTM.

Research software, not a medical device.
"""

import os as _os

# A bad clip gets one line from lusviewer naming the file and the reason; without these,
# OpenCV and the FFmpeg inside it add their own lines ("moov atom not found", "[ WARN:...]
# VIDEOIO(FFMPEG) ... can't be used to capture by name"). Read when OpenCV loads, so set
# before any lusviewer module imports cv2; a user's own setting wins.
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
_os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

__version__ = "0.1.0"
