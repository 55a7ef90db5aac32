"""
====================================================
Saving and deploying a pipeline: pickle, skops, ONNX
====================================================

This example takes a fitted ``StandardScaler -> VAETransformer ->
LogisticRegression`` pipeline to production three ways, from the least to the
most secure (the order of scikit-learn's persistence guide):

1. ``joblib`` (pickle): one line, but loading a pickle runs whatever code the file
   names, so load only files you trust;
2. ``skops.io``: a zip of JSON and NumPy arrays that loads without running code
   from the file; you approve the types it contains, and for a skvae pipeline that
   is skvae's own ``VAETransformer`` and nothing else;
3. ONNX, through :mod:`skvae.onnx` and skl2onnx: a graph of standard operators
   that ``onnxruntime`` (or any ONNX serving stack) runs without Python, torch or
   scikit-learn.

You will learn how to save and load with each, what each one checks, and that
all three give the outputs of the original pipeline. The decoder is exported
too (:func:`skvae.onnx.to_onnx_decoder`), and the figure compares digits it
generates with :meth:`~skvae.VAETransformer.sample`'s.
"""

# %%
# A pipeline to deploy, fitted on the digits.
import shutil
import tempfile
from pathlib import Path

import joblib
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skvae import VAETransformer

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.2, stratify=y, random_state=0)
pipe = Pipeline([("scale", StandardScaler()),
                 ("vae", VAETransformer(8, hidden_layer_sizes=(128,), max_epochs=30,
                                        random_state=0)),
                 ("clf", LogisticRegression(max_iter=2000))])
pipe.fit(X_train, y_train)
print(f"test accuracy: {pipe.score(X_test, y_test):.3f}")
folder = Path(tempfile.mkdtemp())

# %%
# 1. Pickle, through joblib
# -------------------------
# Fine between your own processes (a model cache, a parallel job). Never load a
# pickle from a source you do not trust.
joblib.dump(pipe, folder / "pipe.joblib")
loaded = joblib.load(folder / "pipe.joblib")
print("joblib: same probabilities:",
      np.array_equal(loaded.predict_proba(X_test), pipe.predict_proba(X_test)))

# %%
# 2. skops.io
# -----------
# skops stores the pipeline as JSON plus NumPy arrays. skvae saves a fitted
# ``VAETransformer`` as its architecture and weights (arrays), so nothing in the
# file needs pickle; the network is rebuilt on loading. Before loading, list the
# types that skops does not trust by default and check them:
import skops.io as sio  # noqa: E402

sio.dump(pipe, folder / "pipe.skops")
untrusted = sio.get_untrusted_types(file=folder / "pipe.skops")
print("types to approve:", untrusted)
loaded = sio.load(folder / "pipe.skops", trusted=untrusted)
print("skops: same probabilities:",
      np.array_equal(loaded.predict_proba(X_test), pipe.predict_proba(X_test)))

# %%
# The file records the skvae version and a format number: a newer skvae loads
# older files, and an older skvae refuses a newer format with an error saying
# to upgrade, instead of misreading it.
#
# 3. ONNX, served by onnxruntime
# ------------------------------
# Importing :mod:`skvae.onnx` registers the ``VAETransformer`` converter with
# skl2onnx; the rest is skl2onnx's usual call. The input is float32 with any
# number of rows. ``zipmap=False`` makes the classifier return a plain array of
# probabilities.
import onnxruntime as ort  # noqa: E402
import skl2onnx  # noqa: E402

import skvae.onnx  # noqa: E402, F401  (registers the converter)

onx = skl2onnx.to_onnx(pipe, X_train[:1].astype(np.float32), options={"zipmap": False})
(folder / "pipe.onnx").write_bytes(onx.SerializeToString())
print("operators:", sorted({node.op_type for node in onx.graph.node}))

session = ort.InferenceSession(folder / "pipe.onnx", providers=["CPUExecutionProvider"])
labels, probabilities = session.run(None, {"X": X_test.astype(np.float32)})
print("ONNX: max abs difference of the probabilities:",
      f"{np.abs(probabilities - pipe.predict_proba(X_test)).max():.1e}")
print("ONNX: same labels:", np.array_equal(labels, pipe.predict(X_test)))
print("one row at a time:", session.run(None, {"X": X_test[:1].astype(np.float32)})[0])

# %%
# The VAE step alone converts the same way and computes ``transform``; its
# decoder, ``inverse_transform``, is a model of its own. Fed draws from the
# prior N(0, I) it generates new digits, which is what ``sample`` does.
from skvae.onnx import to_onnx_decoder  # noqa: E402

vae = pipe.named_steps["vae"]
decoder = ort.InferenceSession(to_onnx_decoder(vae).SerializeToString(),
                               providers=["CPUExecutionProvider"])
Z = np.random.default_rng(0).standard_normal((8, vae.n_components)).astype(np.float32)
generated = decoder.run(None, {"Z": Z})[0]
print("decoder: max abs difference from inverse_transform:",
      f"{np.abs(generated - vae.inverse_transform(Z)).max():.1e}")

# the VAE models standardized pixels (the scaler's output): undo the scaler
images = {"skvae inverse_transform": pipe.named_steps["scale"].inverse_transform(
              vae.inverse_transform(Z)),
          "onnxruntime decoder": pipe.named_steps["scale"].inverse_transform(generated)}
fig, axes = plt.subplots(2, 8, figsize=(8, 2.6), layout="constrained")
for row, (title, batch) in zip(axes, images.items()):
    row[0].set_title(title, loc="left", fontsize=9)
    for ax, image in zip(row, batch):
        ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=16)
        ax.set_axis_off()
plt.show()

# %%
# The figure shows eight digits generated from the same latent draws by skvae
# (top) and by the exported decoder in onnxruntime (bottom): they are the same
# images, as the difference printed above says (none at all here; the whole
# pipeline's probabilities differ only by float32 rounding).
shutil.rmtree(folder)  # the saved files of this example
