"""Entry script of the PyInstaller bundle (build.spec): the same `lusviewer` command."""

import sys

import torch  # noqa: F401  # first: on Windows torch's DLLs must load before Qt's

from lusviewer.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
