"""The zoo's calibration / selection / test splits: no source picture in two of them, and every
picture of a split shown by its samples (issue #10's protocol)."""

from __future__ import annotations

import http.client
import io

import pytest

zoo = pytest.importorskip("models.zoo")
Image = pytest.importorskip("PIL.Image")


def test_no_picture_is_in_two_splits_and_every_packaged_photo_is_in_one():
    seen = [name for split in zoo.SPLIT_NAMES for name in zoo.IMAGE_SPLITS[split]]
    assert len(seen) == len(set(seen))
    packaged = set(zoo.PACKAGED_PICTURES)
    assert packaged <= set(seen)
    assert set(zoo.NEW_SOURCE_PICTURES) <= set(zoo.IMAGE_SPLITS["test"])
    lfw = [i for split in zoo.SPLIT_NAMES for i in zoo.LFW_SPLITS[split]]
    assert sorted(lfw) == list(range(10))


@pytest.mark.parametrize("split", zoo.SPLIT_NAMES)
def test_each_split_shows_every_one_of_its_pictures(split, monkeypatch, tmp_path):
    monkeypatch.setattr(zoo, "_picture", lambda source, zoo_dir: Image.new("RGB", (8, 8)))
    count = zoo.IMAGE_SPLIT_SIZES[split]
    shown = {source for source, _, _ in zoo._photo_views(count, 0, split, tmp_path)}
    pictures = set(zoo.IMAGE_SPLITS[split])
    assert pictures <= shown, sorted(pictures - shown)
    assert {s for s in shown if not s.startswith("lfw")} <= pictures


def test_check_pictures_are_distinct_files_and_leave_out_scikit_images_camera():
    members = list(zoo.CHECK_PICTURES.values())
    assert len(members) == len(set(members)) == 25
    assert not any("cameraman" in member for member in members)  # skimage's `camera`


@pytest.mark.parametrize(
    "failure",
    [
        http.client.IncompleteRead(b"partial"),
        OSError("network is unreachable"),
        None,  # the download is not the pinned file
    ],
)
def test_a_failed_check_photo_download_is_one_line_and_build_goes_on(
    failure, monkeypatch, tmp_path, capsys
):
    import urllib.request

    def urlopen(url, timeout):
        if failure is not None:
            raise failure
        return io.BytesIO(b"not the sdist")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    zoo._fetch_check_pictures_or_say(tmp_path)
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("zoo: check photos missing, `check_samples` is unavailable: ")
    assert not list(tmp_path.rglob("sj_*"))


def test_check_samples_show_each_check_picture_whole_then_augmented(monkeypatch, tmp_path):
    sizes = {}

    def picture(source, zoo_dir):
        sizes[source] = (64 + 8 * len(sizes), 48)
        return Image.new("RGB", sizes[source], (len(sizes) * 9, 0, 0))

    monkeypatch.setattr(zoo, "_picture", picture)
    seen = []
    monkeypatch.setattr(zoo, "_preprocess", lambda name, img: seen.append(img.size) or {})
    samples = zoo.check_samples("yolov8n_320", tmp_path)
    assert len(samples) == len(zoo.CHECK_PICTURES) * zoo.CHECK_VIEWS
    assert list(sizes) == list(zoo.CHECK_PICTURES)
    whole = seen[:: zoo.CHECK_VIEWS]
    assert whole == list(sizes.values())
    with pytest.raises(KeyError, match="not an image model"):
        zoo.check_samples("ppocr_cls", tmp_path)


def test_picture_sources_mark_every_fourth_sample_a_thumbnail_without_loading_pictures():
    sources = zoo.picture_sources(zoo.IMAGE_SPLIT_SIZES["test"], "test")
    thumbnails = [i for i, (source, _) in enumerate(sources) if zoo.is_thumbnail(source)]
    assert thumbnails == list(range(3, len(sources), 4))
    photos = {source for source, _ in sources if not zoo.is_thumbnail(source)}
    assert photos == set(zoo.IMAGE_SPLITS["test"])
