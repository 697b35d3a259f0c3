"""Regenerate resources/sample_clip.mp4, the shipped sample (synthetic, no patient data).

python resources/make_sample.py
"""

from pathlib import Path

from lusviewer.io.synthetic import synthetic_frames, write_video

if __name__ == "__main__":
    out = Path(__file__).with_name("sample_clip.mp4")
    write_video(out, synthetic_frames(50, size=256, seed=7), fps=25.0)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
