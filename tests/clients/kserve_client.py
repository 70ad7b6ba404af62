"""Triton's own HTTP client (tritonclient.http) against llmos' KServe v2 routes.

Usage: python kserve_client.py HOST:PORT  (the server must serve add, dtypes and minilm).
Exits non-zero on any mismatch. Run by tests/all/api_kserve.rs.
"""

import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def main(url):
    c = httpclient.InferenceServerClient(url=url)
    check(c.is_server_live(), "server live")
    check(c.is_server_ready(), "server ready")
    check(c.is_model_ready("add"), "add ready")
    check(not c.is_model_ready("no-such-model"), "unknown model not ready")
    meta = c.get_server_metadata()
    check(meta["name"] == "llmos", f"server metadata {meta}")
    check("binary_tensor_data" in meta["extensions"], f"extensions {meta}")

    m = c.get_model_metadata("add")
    check(
        [(i["name"], i["datatype"], i["shape"]) for i in m["inputs"]]
        == [("a", "FP32", [-1, 3]), ("b", "FP32", [-1, 3])],
        f"add metadata {m}",
    )

    # add: every combination of binary and JSON inputs and outputs.
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((2, 3), 0.5, dtype=np.float32)
    for bin_in in (True, False):
        for bin_out in (True, False):
            ia = httpclient.InferInput("a", [2, 3], "FP32")
            ia.set_data_from_numpy(a, binary_data=bin_in)
            ib = httpclient.InferInput("b", [2, 3], "FP32")
            ib.set_data_from_numpy(b, binary_data=not bin_in)
            out = httpclient.InferRequestedOutput("sum", binary_data=bin_out)
            r = c.infer("add", [ia, ib], outputs=[out], request_id="py-1")
            got = r.as_numpy("sum")
            check(
                got is not None and got.shape == (2, 3) and np.allclose(got, a + b),
                f"add bin_in={bin_in} bin_out={bin_out}: {got}",
            )
            check(r.get_response().get("id") == "py-1", f"id echoed: {r.get_response()}")
    # No outputs named: the client asks for every output in binary.
    ia = httpclient.InferInput("a", [2, 3], "FP32")
    ia.set_data_from_numpy(a)
    ib = httpclient.InferInput("b", [2, 3], "FP32")
    ib.set_data_from_numpy(b)
    r = c.infer("add", [ia, ib])
    check(np.allclose(r.as_numpy("sum"), a + b), "add with default outputs")

    # dtypes: FP16, INT64, INT32, BOOL, binary and JSON.
    x = {
        "x_f16": np.array([0.5, -1.25, 3.0], dtype=np.float16),
        "x_i64": np.array([41, -9_000_000_000], dtype=np.int64),
        "x_i32": np.array([[1, 2], [-3, 4]], dtype=np.int32),
        "x_bool": np.array([True, False, True]),
    }
    types = {"x_f16": "FP16", "x_i64": "INT64", "x_i32": "INT32", "x_bool": "BOOL"}
    want = {
        "y_f16": x["x_f16"] * 2,
        "y_i64": x["x_i64"] + 1,
        "y_i32": x["x_i32"] * 3,
        "y_bool": ~x["x_bool"],
    }
    for binary in (True, False):
        ins = []
        for name, arr in x.items():
            i = httpclient.InferInput(name, list(arr.shape), types[name])
            i.set_data_from_numpy(arr, binary_data=binary)
            ins.append(i)
        outs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in want]
        r = c.infer("dtypes", ins, outputs=outs)
        for n, w in want.items():
            got = r.as_numpy(n)
            check(
                got is not None
                and got.dtype == w.dtype
                and got.shape == w.shape
                and np.array_equal(got, w),
                f"dtypes {n} binary={binary}: got {got!r}, want {w!r}",
            )

    # minilm: BYTES text in, embedding out.
    m = c.get_model_metadata("minilm")
    check(m["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}], f"minilm {m}")
    texts = np.array(["The cat sits on the mat.", "A cat is sitting on a mat."], dtype=np.object_)
    for binary in (True, False):
        t = httpclient.InferInput("text", [2], "BYTES")
        t.set_data_from_numpy(texts, binary_data=binary)
        r = c.infer(
            "minilm", [t], outputs=[httpclient.InferRequestedOutput("embedding", binary_data=True)]
        )
        e = r.as_numpy("embedding")
        check(e is not None and e.shape == (2, 384) and e.dtype == np.float32, f"embedding {e}")
        if e is not None and e.shape == (2, 384):
            check(np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-3), "normalised")
            check(float(e[0] @ e[1]) > 0.8, "similar sentences are close")

    # Errors come back as exceptions carrying the server's message.
    i = httpclient.InferInput("a", [1, 4], "FP32")
    i.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
    try:
        c.infer("add", [i])
        check(False, "wrong shape accepted")
    except InferenceServerException as e:
        check("[-1, 3]" in str(e), f"wrong-shape message: {e}")

    if failures:
        print(f"{len(failures)} failure(s)", file=sys.stderr)
        sys.exit(1)
    print("kserve client: ok")


if __name__ == "__main__":
    main(sys.argv[1])
