#!/usr/bin/env bash
# End-to-end test of the Debian package, as a clinician's machine would see it:
#
#   1. install dist/lusviewer_<version>_amd64.deb with apt (Depends resolved by apt);
#   2. `lusviewer --self-test` from the PATH (no display);
#   3. launch the app exactly as the desktop does, from the .desktop entry's Exec line
#      with a clip, under Xvfb; wait for the window, check that it shows the clip and
#      that the clip was scored (title and the app's log), take a screenshot;
#   4. quit with Ctrl+Q and check the app exits cleanly;
#   5. purge the package and check nothing it installed is left behind.
#
#     sudo packaging/test_deb.sh [DEB] [CLIP]
#
# Needs root (apt), Xvfb, xdotool, imagemagick (`import`). Writes the screenshot to
# docs/screenshots/installed-deb.png and timings to build/test_deb_times.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$ROOT/lusviewer/__init__.py")"
DEB="$(realpath "${1:-$ROOT/dist/lusviewer_${VERSION}_amd64.deb}")"
CLIP_IN="${2:-$ROOT/resources/sample_clip.mp4}"
SHOT="$ROOT/docs/screenshots/installed-deb.png"
TIMES="$ROOT/build/test_deb_times.txt"
DISPLAY_NUM="${DISPLAY_NUM:-:93}"
WORK="$(mktemp -d)"
t0=$(date +%s)
say() { printf '[test_deb %3ds] %s\n' "$(($(date +%s) - t0))" "$*"; }
fail() { echo "test_deb: FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.2f", a - b }'; }
XVFB_PID=""
APP_PID=""
cleanup() {
    [[ -n "$APP_PID" ]] && kill "$APP_PID" 2>/dev/null || true
    [[ -n "$XVFB_PID" ]] && kill "$XVFB_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# A clinician's PATH, not a developer's (no virtualenv or pyenv shims in front).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
[[ -f "$DEB" ]] || fail "no package at $DEB (run packaging/build_deb.sh)"
for tool in apt-get Xvfb xdotool import; do command -v "$tool" >/dev/null || fail "$tool is missing"; done
dpkg -s lusviewer >/dev/null 2>&1 && fail "lusviewer is already installed; remove it first"
mkdir -p "$(dirname "$TIMES")" "$(dirname "$SHOT")"
: > "$TIMES"

# The clip goes where a user keeps clips (a path with a space, as on real desktops).
CLIP="$WORK/my clips/$(basename "$CLIP_IN")"
mkdir -p "$(dirname "$CLIP")"
cp "$CLIP_IN" "$CLIP"

snapshot() {  # every path the package could touch, to compare before and after
    find /opt /usr/bin /usr/share/applications /usr/share/icons/hicolor /usr/share/mime/packages \
        /usr/share/doc -xdev 2>/dev/null | grep -v -e '/usr/share/mime/[^p]' -e 'mimeinfo.cache$' | sort
}
snapshot > "$WORK/before.txt"

say "apt-get install $(basename "$DEB")"
ti=$(now)
apt-get install -y -q "$DEB" > "$WORK/apt-install.log" 2>&1 || { tail -20 "$WORK/apt-install.log"; fail "apt install"; }
echo "install_s $(since "$ti")" >> "$TIMES"
[[ "$(command -v lusviewer)" == /usr/bin/lusviewer ]] || fail "lusviewer is not on the PATH"
[[ -f /usr/share/icons/hicolor/256x256/apps/lusviewer.png ]] || fail "icon not installed"
desktop-file-validate /usr/share/applications/lusviewer.desktop || fail "installed .desktop entry is invalid"

say "lusviewer --self-test (from the PATH, no display)"
out="$(cd / && env -u DISPLAY QT_QPA_PLATFORM=offscreen lusviewer --self-test)" || fail "self-test: $out"
echo "$out"
[[ "$out" == "lusviewer self-test ok"* ]] || fail "unexpected self-test output"

if command -v xdg-mime >/dev/null; then  # "Open with LUS Viewer" for the clip's type
    mime="$(xdg-mime query filetype "$CLIP" 2>/dev/null || true)"
    say "clip MIME type: ${mime:-unknown}"
fi
grep -q "video/mp4" /usr/share/applications/mimeinfo.cache 2>/dev/null &&
    grep "video/mp4" /usr/share/applications/mimeinfo.cache | grep -q lusviewer.desktop ||
    say "note: mimeinfo.cache does not list lusviewer for video/mp4 (desktop-file-utils not installed?)"

say "Xvfb $DISPLAY_NUM"
Xvfb "$DISPLAY_NUM" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
XVFB_PID=$!
for _ in $(seq 50); do xdotool getdisplaygeometry --display "$DISPLAY_NUM" >/dev/null 2>&1 && break; sleep 0.1; done
export DISPLAY="$DISPLAY_NUM"
unset QT_QPA_PLATFORM

# The Exec line, with %f replaced by the clip, as a desktop environment runs it.
exec_line="$(sed -n 's/^Exec=//p' /usr/share/applications/lusviewer.desktop)"
[[ "$exec_line" == *"%f"* ]] || fail "Exec line has no %f: $exec_line"
read -r -a argv <<<"${exec_line%%%f*}"
argv+=("$CLIP")
say "launch: ${argv[*]}"
export HOME="$WORK/home"  # a fresh user: no settings, a new log
mkdir -p "$HOME"
LOG="$HOME/.local/state/lusviewer/log/lusviewer.log"
tl=$(now)
(cd "$HOME" && exec "${argv[@]}") > "$WORK/app.out" 2>&1 &
APP_PID=$!
wid=""
for _ in $(seq 600); do
    wid="$(xdotool search --onlyvisible --name "LUS Viewer" 2>/dev/null | head -1 || true)"
    [[ -n "$wid" ]] && break
    kill -0 "$APP_PID" 2>/dev/null || { cat "$WORK/app.out"; fail "the app exited before showing a window"; }
    sleep 0.1
done
[[ -n "$wid" ]] || fail "no window within 60 s"
echo "cold_start_to_window_s $(since "$tl")" >> "$TIMES"
say "window $wid: $(xdotool getwindowname "$wid")"

# The clip opens (its name in the title) and gets scored (the app logs it).
name="$(basename "$CLIP")"
for _ in $(seq 1200); do
    grep -q "scored $CLIP" "$LOG" 2>/dev/null && break
    kill -0 "$APP_PID" 2>/dev/null || { cat "$WORK/app.out"; fail "the app died while scoring"; }
    sleep 0.1
done
grep -q "scored $CLIP" "$LOG" 2>/dev/null || { cat "$LOG" 2>/dev/null; fail "the clip was not scored within 120 s"; }
echo "launch_to_scored_s $(since "$tl")" >> "$TIMES"
title="$(xdotool getwindowname "$wid")"
[[ "$title" == "$name — LUS Viewer" ]] || fail "window title is '$title', not the clip's"
grep "scored $CLIP" "$LOG" | tail -1
sleep 1.5  # let the last repaint land
import -window root "$SHOT"
say "screenshot $SHOT"
# The frame view must show an image, not an empty widget: enough distinct grey levels.
colours="$(convert "$SHOT" -crop 60%x70%+0+60 -colors 256 -format '%k' info:)"
[[ "$colours" -gt 40 ]] || fail "the screenshot shows no clip ($colours colours in the image area)"

say "quit with Ctrl+Q"
# Real key events (XTEST) to the focused window; there is no window manager under Xvfb.
xdotool windowfocus --sync "$wid" 2>/dev/null || true
xdotool key ctrl+q
for _ in $(seq 150); do kill -0 "$APP_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$APP_PID" 2>/dev/null && fail "the app did not exit within 15 s of Ctrl+Q"
rc=0
wait "$APP_PID" || rc=$?
APP_PID=""
[[ "$rc" == 0 ]] || { cat "$WORK/app.out"; fail "the app exited with status $rc"; }
grep -qi "traceback\|uncaught" "$LOG" && fail "the log has an error: $(grep -i -m1 'traceback\|uncaught' "$LOG")"

say "apt-get purge lusviewer"
tr=$(now)
apt-get purge -y -q lusviewer > "$WORK/apt-remove.log" 2>&1 || fail "apt purge"
echo "remove_s $(since "$tr")" >> "$TIMES"
dpkg -s lusviewer >/dev/null 2>&1 && fail "dpkg still lists lusviewer"
snapshot > "$WORK/after.txt"
if ! diff -u "$WORK/before.txt" "$WORK/after.txt" > "$WORK/leftover.diff"; then
    cat "$WORK/leftover.diff"
    fail "files left behind (or removed) by the package"
fi
say "PASS: installed, self-test ok, window with the clip, clean exit, clean removal"
cat "$TIMES"
