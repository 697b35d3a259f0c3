"""Regenerate resources/sample_clip.mp4, the shipped sample (synthetic, no patient data).

python resources/make_sample.py

The shipped model scores it 3 and does not flag it as unfamiliar; the README's Quick
start says why (measured), and why the sample is kept as it is.
"""

from pathlib import Path

from lusviewer.io.synthetic import synthetic_frames, write_video

if __name__ == "__main__":
    out = Path(__file__).with_name("sample_clip.mp4")
    write_video(out, synthetic_frames(50, size=256, seed=7), fps=25.0)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
