#!/usr/bin/env bash
# macOS: LUS Viewer.app (PyInstaller BUNDLE, see build.spec) and a .dmg.
# UNTESTED: written on Linux, where neither can be built. Run on macOS 12+ with
# Python 3.11 (arm64 for Apple silicon; a universal2 torch does not exist, so
# build once per architecture). torch on macOS is CPU/MPS only (no CUDA); the
# engine uses the CPU there.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' lusviewer/__init__.py)"
ARCH="$(uname -m)"
python3 -m venv build/venv-mac
build/venv-mac/bin/pip install torch torchvision
build/venv-mac/bin/pip install . "pyinstaller>=6.10"
build/venv-mac/bin/pyinstaller --noconfirm --clean build.spec
"dist/LUS Viewer.app/Contents/MacOS/lusviewer-cli" --self-test
# Ad-hoc signature so Gatekeeper on the build machine runs it; for distribution sign
# with a Developer ID (codesign --deep --options runtime -s "Developer ID ...") and
# notarise (xcrun notarytool submit ... --wait; xcrun stapler staple).
codesign --force --deep -s - "dist/LUS Viewer.app"
rm -rf build/dmg && mkdir -p build/dmg
cp -R "dist/LUS Viewer.app" build/dmg/
ln -s /Applications build/dmg/Applications
hdiutil create -volname "LUS Viewer" -srcfolder build/dmg -ov -format UDZO "dist/lusviewer-${VERSION}-${ARCH}.dmg"
echo "wrote dist/lusviewer-${VERSION}-${ARCH}.dmg"
