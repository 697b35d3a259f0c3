#!/usr/bin/env bash
# Build the PyInstaller bundle and the Debian package dist/lusviewer_<version>_amd64.deb.
#
#     packaging/build_deb.sh                 # CPU-only torch (the default: ~1.2 GB bundle)
#     LUSVIEWER_TORCH=cuda packaging/build_deb.sh   # CUDA torch from PyPI (~5 GB bundle)
#
# Steps: a clean build venv (build/venv-<flavour>) with the chosen torch, lusviewer and
# PyInstaller; `pyinstaller build.spec`; a smoke test of the bundle (--self-test);
# then the .deb: the bundle under /opt/lusviewer, /usr/bin/lusviewer, a .desktop
# entry, hicolor icons, a MIME definition for DICOM, and Depends computed by
# dpkg-shlibdeps from the bundle's own ELF files (so the glibc floor is that of the
# build machine's libraries: build on the oldest distribution you support).
#
# Needs: python3 (3.10+) with venv, dpkg-dev (dpkg-shlibdeps), desktop-file-utils,
# binutils. Set TORCH_SPEC to pin other torch/torchvision wheels, e.g.
#     TORCH_SPEC="torch==2.13.0+cpu torchvision==0.28.0" packaging/build_deb.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FLAVOUR="${LUSVIEWER_TORCH:-cpu}"
PYTHON="${PYTHON:-python3}"
VENV="build/venv-$FLAVOUR"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' lusviewer/__init__.py)"
ARCH=amd64
DEB="dist/lusviewer_${VERSION}_${ARCH}.deb"
STAGE="$ROOT/build/deb/lusviewer_${VERSION}_${ARCH}"
t0=$(date +%s)
say() { printf '[build_deb %3ds] %s\n' "$(($(date +%s) - t0))" "$*"; }

for tool in dpkg-deb dpkg-shlibdeps desktop-file-validate objdump; do
    command -v "$tool" >/dev/null || { echo "build_deb: $tool is missing (apt-get install dpkg-dev desktop-file-utils binutils)" >&2; exit 2; }
done

if [[ -z "${TORCH_SPEC:-}" ]]; then
    case "$FLAVOUR" in
        cpu)
            # PyTorch's CPU wheels; offline, whatever CPU build pip's find-links offer.
            TORCH_SPEC="torch torchvision"
            TORCH_INDEX=(--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple)
            ;;
        cuda)
            TORCH_SPEC="torch torchvision"
            TORCH_INDEX=()
            ;;
        *) echo "build_deb: LUSVIEWER_TORCH must be cpu or cuda" >&2; exit 2 ;;
    esac
else
    TORCH_INDEX=()
fi

if [[ ! -x "$VENV/bin/pyinstaller" ]]; then
    say "build venv $VENV ($FLAVOUR torch)"
    "$PYTHON" -m venv "$VENV"
    # shellcheck disable=SC2086
    if ! "$VENV/bin/pip" install -q --timeout 20 --retries 1 ${TORCH_INDEX[@]+"${TORCH_INDEX[@]}"} $TORCH_SPEC; then
        [[ "$FLAVOUR" == cpu ]] || exit 1
        cpu_fallback=1
    fi
    # pip's configured extra indexes may still have handed us a CUDA build.
    if [[ "$FLAVOUR" == cpu && -z "${cpu_fallback:-}" ]] &&
        ! "$VENV/bin/python" -c "import sys, torch; sys.exit(bool(torch.version.cuda))" 2>/dev/null; then
        say "that torch is a CUDA build; looking for a CPU-only one"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
        cpu_fallback=1
    fi
    if [[ -n "${cpu_fallback:-}" ]]; then
        # Offline: a CPU torch wheel from pip's find-links, with the torchvision of its
        # release (torch 2.N pairs with torchvision 0.(N+15)).
        cpu_whl="$(ls "${PIP_FIND_LINKS:-/opt/wheels}"/torch-*+cpu-*.whl 2>/dev/null | sort -V | tail -1 || true)"
        [[ -n "$cpu_whl" ]] || { echo "build_deb: no CPU torch reachable; set TORCH_SPEC" >&2; exit 2; }
        minor="$(basename "$cpu_whl" | sed -E 's/^torch-2\.([0-9]+)\..*/\1/')"
        say "no CPU torch from the index: $(basename "$cpu_whl") with torchvision 0.$((minor + 15)).0"
        "$VENV/bin/pip" install -q "$cpu_whl" "torchvision==0.$((minor + 15)).0"
    fi
    "$VENV/bin/pip" install -q . "pyinstaller>=6.10"
fi
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__, 'CUDA' if torch.version.cuda else 'CPU-only')"

say "PyInstaller bundle"
rm -rf dist/lusviewer
"$VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyi build.spec
say "bundle: $(du -sh dist/lusviewer | cut -f1)"
QT_QPA_PLATFORM=offscreen dist/lusviewer/lusviewer --self-test

say "staging $STAGE"
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$STAGE/opt" "$STAGE/usr/bin" "$STAGE/usr/share/applications" \
    "$STAGE/usr/share/mime/packages" "$STAGE/usr/share/doc/lusviewer" "$STAGE/usr/share/icons/hicolor/scalable/apps"
cp -a dist/lusviewer "$STAGE/opt/lusviewer"
ln -s /opt/lusviewer/lusviewer "$STAGE/usr/bin/lusviewer"
install -m 644 packaging/lusviewer.desktop "$STAGE/usr/share/applications/lusviewer.desktop"
install -m 644 packaging/lusviewer-mime.xml "$STAGE/usr/share/mime/packages/lusviewer.xml"
install -m 644 resources/icons/lusviewer.svg "$STAGE/usr/share/icons/hicolor/scalable/apps/lusviewer.svg"
for s in 16 22 24 32 48 64 128 256 512; do
    mkdir -p "$STAGE/usr/share/icons/hicolor/${s}x${s}/apps"
    install -m 644 "resources/icons/lusviewer-$s.png" "$STAGE/usr/share/icons/hicolor/${s}x${s}/apps/lusviewer.png"
done
install -m 644 packaging/copyright "$STAGE/usr/share/doc/lusviewer/copyright"
desktop-file-validate "$STAGE/usr/share/applications/lusviewer.desktop"

say "Depends (dpkg-shlibdeps over the bundle's ELF files)"
mapfile -t elves < <(find "$STAGE/opt/lusviewer" -type f \( -name '*.so*' -o -perm -u+x \) -print0 |
    xargs -0 -r sh -c 'for f; do [ "$(head -c4 "$f" | tail -c3)" = ELF ] && echo "$f"; done' _)
# libcuda.so.1 comes with the NVIDIA driver, not with a package Depends can name.
mapfile -t elves < <(for f in "${elves[@]}"; do objdump -p "$f" 2>/dev/null | grep -q 'NEEDED *libcuda\.so' || echo "$f"; done)
mapfile -t libdirs < <(printf '%s\n' "${elves[@]}" | xargs -n1 dirname | sort -u | sed 's/^/-l/')
mkdir -p build/shlibdeps/debian
printf 'Source: lusviewer\nMaintainer: lusviewer developers <lusviewer@users.noreply.github.com>\n\nPackage: lusviewer\nArchitecture: %s\n' "$ARCH" > build/shlibdeps/debian/control
shlibs="$(cd build/shlibdeps && dpkg-shlibdeps -O --ignore-missing-info "${libdirs[@]}" "${elves[@]}" 2>warnings.txt)" || {
    grep error build/shlibdeps/warnings.txt >&2; exit 1; }
depends="$(sed -n 's/^shlibs:Depends=//p' <<<"$shlibs")"
echo "Depends: $depends"
# The Qt xcb plugin's helpers: missing on many minimal systems, so check they are named.
for pkg in libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0; do
    grep -q "\b$pkg\b" <<<"$depends" || { echo "build_deb: $pkg missing from Depends" >&2; exit 1; }
done

installed_kb="$(du -sk "$STAGE" --exclude=DEBIAN | cut -f1)"
cat > "$STAGE/DEBIAN/control" <<EOF
Package: lusviewer
Version: $VERSION
Architecture: $ARCH
Maintainer: lusviewer developers <lusviewer@users.noreply.github.com>
Installed-Size: $installed_kb
Depends: $depends
Recommends: shared-mime-info, hicolor-icon-theme, desktop-file-utils
Section: science
Priority: optional
Homepage: https://github.com/lusviewer/lusviewer
Description: LUS Viewer: lung-ultrasound severity scoring (research software)
 Opens lung-ultrasound clips (MP4, AVI, MOV, MPEG, GIF, DICOM), scores every
 frame 0-3 on the ICLUS/Soldati scale with a small CNN (the hybrid CNN-LSTM of
 Dastider et al. 2021 is trainable too), shows a severity
 timeline and the autoencoder's reconstruction, and exports a CSV report.
 Research software, not a medical device. The shipped model was trained on
 COVID-BLUeS (CC BY-NC-ND 4.0): non-commercial research use only.
 Torch flavour of this build: $FLAVOUR.
EOF
find "$STAGE" -type d -exec chmod 755 {} +

say "dpkg-deb"
mkdir -p dist
threads=()
dpkg-deb --help | grep -q -- --threads-max && threads=(--threads-max="$(nproc)")
dpkg-deb --root-owner-group -Zxz -z6 "${threads[@]}" --build "$STAGE" "$DEB" >/dev/null
say "wrote $DEB ($(du -h "$DEB" | cut -f1); bundle $(du -sh dist/lusviewer | cut -f1), installed ${installed_kb} KiB)"
