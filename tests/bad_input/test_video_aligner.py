"""A folder of user videos (with non-video files, empty and broken clips) and image-caption manifests."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.aligner.conftest import write_shapes
from tests.video.conftest import synthetic_frames, write_video

from .conftest import Case, params, run_case, write_csv


def videos(*extra: tuple[str, str], flags: tuple = (), target: str = "vids"):
    def make(tmp):
        folder = tmp / "vids"
        folder.mkdir()
        write_video(folder / "one.mp4", synthetic_frames(10))
        write_video(folder / "two.mp4", synthetic_frames(12))
        for name, kind in extra:
            path = folder / name
            if kind == "empty":
                path.write_bytes(b"")
            elif kind == "text":
                path.write_text("not a video")
            elif kind == "truncated":
                path.write_bytes((folder / "one.mp4").read_bytes()[:200])
            elif kind == "frames":
                path.mkdir()
                for i, f in enumerate(synthetic_frames(9)):
                    Image.fromarray(f).save(path / f"{i if i != 4 else 40:05d}.jpg")
        return ["embed", "{video}", str(tmp / target), "-o", "{out}", *flags]

    return make


def pairs(edit=None, flags: tuple = ("--column", "caption")):
    def make(tmp):
        manifest = write_shapes(tmp / "shapes", n_images=4, captions_per_image=1)
        if edit:
            edit(manifest)
        return ["embed", "{aligner}", str(manifest), "-o", "{out}", *flags]

    return make


def blank_caption(manifest):
    lines = manifest.read_text().splitlines()
    lines[2] = lines[2].split(",")[0] + ","
    manifest.write_text("\n".join(lines) + "\n")


def broken_image(manifest):
    (manifest.parent / "img001.png").write_text("not an image")


def missing_image(manifest):
    (manifest.parent / "img002.png").unlink()


def odd_modes(manifest):
    folder = manifest.parent
    Image.open(folder / "img000.png").convert("CMYK").save(folder / "img000.jpg")
    Image.open(folder / "img001.png").convert("LA").save(folder / "img001.png")
    Image.open(folder / "img002.png").convert("P").save(folder / "img002.png")
    manifest.write_text(manifest.read_text().replace("img000.png", "img000.jpg"))


def long_caption(manifest):
    manifest.write_text(manifest.read_text().replace("a red square", "a red square " * 200))


CASES = [
    Case(
        "folder-with-readme-and-thumbs",
        videos(("README.txt", "text"), ("Thumbs.db", "text")),
        0,
        r"read 2 videos \(22 frames\); ignored 2 non-video entries \(README\.txt, Thumbs\.db\).*wrote 2 embeddings",
    ),
    Case("zero-byte-clip", videos(("broken.mp4", "empty")), 2, r"broken\.mp4: the file is empty \(0 bytes\)"),
    Case(
        "zero-byte-clip-skipped",
        videos(("broken.mp4", "empty"), flags=("--on-error", "skip")),
        0,
        r"read 2 videos .*skipped 1 unreadable: .*broken\.mp4.*wrote 2 embeddings",
    ),
    Case(
        "text-named-mp4",
        videos(("fake.mp4", "text")),
        2,
        r"fake\.mp4: decord cannot open it as a video .*PyAV "
        r"fallback failed too .*Invalid data",
    ),
    Case("truncated-clip", videos(("cut.mp4", "truncated")), 2, r"cut\.mp4: decord cannot open it as a video"),
    Case("frame-folder-with-gap", videos(("frames", "frames")), 2, r"frames: frame numbering has gaps"),
    Case(
        "only-notes",
        lambda tmp: write_csv(tmp / "v" / "notes.txt", "x") and ["embed", "{video}", str(tmp / "v"), "-o", "{out}"],
        2,
        r"v: no videos .* or frame folders found "
        r"\(found only: notes\.txt\)",
    ),
    Case("glob-matches-nothing", videos(target="vids/*.mov"), 2, r"no video matches '.*\*\.mov'"),
    Case("column-flag", videos(flags=("--column", "path")), 2, r"a video model embeds whole videos"),
    Case("single-video-file", videos(target="vids/one.mp4"), 0, r"read 1 videos \(10 frames\).*wrote 1 embeddings"),
    Case("captions", pairs(), 0, r"embedded 4 captions of column 'caption'.*wrote 4 embeddings"),
    Case("images", pairs(flags=("--column", "image")), 0, r"embedded 4 image paths of column 'image'"),
    Case("no-column", pairs(flags=()), 2, r"an aligner embeds one column.*found columns: image, caption"),
    Case(
        "column-typo",
        pairs(flags=("--column", "captions")),
        2,
        r"--column 'captions' is not a column.*did you "
        r"mean 'caption'",
    ),
    Case(
        "blank-caption",
        pairs(blank_caption),
        2,
        r"column 'caption': 1 empty captions \(data rows 2\); pass "
        r"--on-error skip",
    ),
    Case(
        "blank-caption-skipped",
        pairs(blank_caption, ("--column", "caption", "--on-error", "skip")),
        0,
        r"skipped 1 \(data rows 2\).*wrote 3 embeddings",
    ),
    Case(
        "undecodable-image",
        pairs(broken_image, ("--column", "image")),
        2,
        r"column 'image': 1 unusable image\(s\) \(data row 2: .*img001\.png: cannot decode image",
    ),
    Case(
        "missing-image",
        pairs(missing_image, ("--column", "image")),
        2,
        r"data row 3: image not found: "
        r".*img002\.png",
    ),
    Case(
        "missing-image-skipped",
        pairs(missing_image, ("--column", "image", "--on-error", "skip")),
        0,
        r"wrote 3 embeddings",
    ),
    Case("cmyk-greyscale-alpha-palette", pairs(odd_modes, ("--column", "image")), 0, r"wrote 4 embeddings"),
    Case("very-long-caption", pairs(long_caption), 0, r"wrote 4 embeddings"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_video_and_image_inputs(case, tmp_path, capsys, models):
    run_case(case, tmp_path, capsys, models)


def test_video_rows_name_their_files(tmp_path, models):
    from ssl_modal.cli import main

    videos(("notes.md", "text"))(tmp_path)
    assert main(["embed", str(models["video"]), str(tmp_path / "vids"), "-o", str(tmp_path / "e.parquet")]) == 0
    table = pq.read_table(tmp_path / "e.parquet")
    assert [p.rsplit("/", 1)[-1] for p in table.column("path").to_pylist()] == ["one.mp4", "two.mp4"]
    assert table.column("frames").to_pylist() == [10, 12]
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    assert emb.shape == (2, 16) and np.isfinite(emb).all()


def test_training_folder_of_user_videos(tmp_path):
    from ssl_modal.video.data import load_videos

    videos(("README.txt", "text"), ("broken.mp4", "empty"))(tmp_path)
    report = load_videos([str(tmp_path / "vids")], [32, 48], on_error="skip")
    assert sorted(p.rsplit("/", 1)[-1] for p in report.videos) == ["one.mp4", "two.mp4"]
    assert [p.rsplit("/", 1)[-1] for p in report.skipped] == ["broken.mp4"]
