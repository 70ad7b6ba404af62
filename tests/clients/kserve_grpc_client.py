"""Triton's own gRPC client (tritonclient.grpc) against llmos' KServe v2 gRPC service,
checked against the HTTP /v2 answer (tritonclient.http) for the same input.

Usage:
  python kserve_grpc_client.py GRPC_HOST:PORT HTTP_HOST:PORT KEY LIMITED_KEY
      (the server must serve add, dtypes and minilm; KEY has models:*, LIMITED_KEY only
       models:minilm). Exits non-zero on any mismatch. Run by tests/all/grpc.rs.
  python kserve_grpc_client.py --bench N GRPC_HOST:PORT HTTP_HOST:PORT [KEY]
      Latency of N small infers (add, 2x3 FP32) over gRPC and over HTTP (binary tensors).
"""

import sys
import time

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def add_inputs(mod, a, b, datatype="FP32"):
    ia = mod.InferInput("a", list(a.shape), datatype)
    ia.set_data_from_numpy(a)
    ib = mod.InferInput("b", list(b.shape), "FP32")
    ib.set_data_from_numpy(b)
    return [ia, ib]


def refused(call, code, *words):
    """Runs call; it must raise with the gRPC status `code` and a message holding `words`."""
    try:
        call()
    except InferenceServerException as e:
        status, msg = str(e.status()), e.message() or ""
        ok = status == f"StatusCode.{code}" and all(w in msg for w in words)
        check(ok, f"expected {code} with {words}, got {status}: {msg}")
        return msg
    check(False, f"expected {code} with {words}, but the call succeeded")
    return ""


def main(grpc_url, http_url, key, limited):
    # tritonclient.http adds its own headers to the dict it is given: HTTP calls get a copy.
    auth = {"authorization": f"Bearer {key}"}
    g = grpcclient.InferenceServerClient(url=grpc_url)
    h = httpclient.InferenceServerClient(url=http_url)

    # Health and metadata.
    check(g.is_server_live(), "server live")
    check(g.is_server_ready(), "server ready")
    check(g.is_model_ready("add", headers=auth), "add ready")
    meta = g.get_server_metadata(headers=auth, as_json=True)
    check(meta["name"] == "llmos", f"server metadata {meta}")
    m = g.get_model_metadata("add", headers=auth, as_json=True)
    check(
        [(i["name"], i["datatype"], [int(d) for d in i["shape"]]) for i in m["inputs"]]
        == [("a", "FP32", [-1, 3]), ("b", "FP32", [-1, 3])],
        f"add metadata {m}",
    )
    check(m["versions"] == ["1"], f"add versions {m}")
    hm = h.get_model_metadata("minilm", headers=dict(auth))
    gm = g.get_model_metadata("minilm", headers=auth, as_json=True)
    check(
        [(o["name"], o["datatype"], [int(d) for d in o["shape"]]) for o in gm["outputs"]]
        == [(o["name"], o["datatype"], o["shape"]) for o in hm["outputs"]],
        f"minilm metadata gRPC {gm} vs HTTP {hm}",
    )

    # add, raw contents both ways; equal to the HTTP answer.
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((2, 3), 0.5, dtype=np.float32)
    r = g.infer("add", add_inputs(grpcclient, a, b), request_id="g-1", headers=auth)
    got = r.as_numpy("sum")
    want = h.infer("add", add_inputs(httpclient, a, b), headers=dict(auth)).as_numpy("sum")
    check(got is not None and got.shape == (2, 3) and np.array_equal(got, want), f"add: {got} vs HTTP {want}")
    check(np.allclose(got, a + b), f"add values {got}")
    check(r.get_response().id == "g-1", f"id echoed: {r.get_response().id!r}")
    check(r.get_response().model_name == "add", "model_name")

    # Requested outputs.
    out = grpcclient.InferRequestedOutput("sum")
    r = g.infer("add", add_inputs(grpcclient, a, b), outputs=[out], headers=auth)
    check(np.array_equal(r.as_numpy("sum"), want), "add with outputs named")

    # dtypes: FP16, INT64, INT32, BOOL as raw contents.
    x = {
        "x_f16": np.array([0.5, -1.25, 3.0], dtype=np.float16),
        "x_i64": np.array([41, -9_000_000_000], dtype=np.int64),
        "x_i32": np.array([[1, 2], [-3, 4]], dtype=np.int32),
        "x_bool": np.array([True, False, True]),
    }
    types = {"x_f16": "FP16", "x_i64": "INT64", "x_i32": "INT32", "x_bool": "BOOL"}
    want_d = {
        "y_f16": x["x_f16"] * 2,
        "y_i64": x["x_i64"] + 1,
        "y_i32": x["x_i32"] * 3,
        "y_bool": ~x["x_bool"],
    }
    ins = []
    for name, arr in x.items():
        i = grpcclient.InferInput(name, list(arr.shape), types[name])
        i.set_data_from_numpy(arr)
        ins.append(i)
    r = g.infer("dtypes", ins, headers=auth)
    for name, w in want_d.items():
        got = r.as_numpy(name)
        check(got is not None and got.dtype == w.dtype and np.array_equal(got, w), f"dtypes {name}: {got} want {w}")

    # minilm: texts as BYTES, embeddings equal to HTTP's.
    texts = np.array([b"The cat sits on the mat.", "Ein Hund bellt.".encode()], dtype=np.object_)
    gi = grpcclient.InferInput("text", [2], "BYTES")
    gi.set_data_from_numpy(texts)
    ge = g.infer("minilm", [gi], headers=auth).as_numpy("embedding")
    hi = httpclient.InferInput("text", [2], "BYTES")
    hi.set_data_from_numpy(texts)
    he = h.infer("minilm", [hi], headers=dict(auth)).as_numpy("embedding")
    check(ge is not None and ge.shape == he.shape and ge.shape[0] == 2, f"minilm shapes {getattr(ge, 'shape', None)} vs {he.shape}")
    check(ge is not None and np.array_equal(ge, he), "minilm embeddings equal over gRPC and HTTP")

    # Typed contents (not raw), through the generated stub directly.
    with grpc.insecure_channel(grpc_url) as ch:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
        req = service_pb2.ModelInferRequest(model_name="add")
        for name, arr in (("a", a), ("b", b)):
            t = req.inputs.add(name=name, datatype="FP32", shape=list(arr.shape))
            t.contents.fp32_contents.extend(arr.flatten().tolist())
        resp = stub.ModelInfer(req, metadata=(("authorization", f"Bearer {key}"),))
        got = np.frombuffer(resp.raw_output_contents[0], dtype=np.float32).reshape(2, 3)
        check(np.array_equal(got, want), f"typed contents: {got}")
        # Typed contents of the wrong kind name the field that is accepted.
        req = service_pb2.ModelInferRequest(model_name="add")
        t = req.inputs.add(name="a", datatype="FP32", shape=[1, 3])
        t.contents.int_contents.extend([1, 2, 3])
        try:
            stub.ModelInfer(req, metadata=(("authorization", f"Bearer {key}"),))
            check(False, "int_contents for FP32 accepted")
        except grpc.RpcError as e:
            check(
                e.code() == grpc.StatusCode.INVALID_ARGUMENT and "fp32_contents" in e.details(),
                f"int_contents for FP32: {e.code()} {e.details()}",
            )

    # Bad input: wrong datatype, wrong shape, unknown input.
    ai = a.astype(np.int32)
    refused(
        lambda: g.infer("add", add_inputs(grpcclient, ai, b, "INT32"), headers=auth),
        "INVALID_ARGUMENT", "INT32", "expects FP32",
    )
    a4 = np.zeros((2, 4), dtype=np.float32)
    refused(
        lambda: g.infer("add", add_inputs(grpcclient, a4, b), headers=auth),
        "INVALID_ARGUMENT", "[2, 4]", "[-1, 3]",
    )
    bad = grpcclient.InferInput("c", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    refused(lambda: g.infer("add", [bad], headers=auth), "INVALID_ARGUMENT", '"c"', "a, b")
    u8 = grpcclient.InferInput("a", [1], "UINT8")
    u8.set_data_from_numpy(np.zeros(1, dtype=np.uint8))
    refused(lambda: g.infer("add", [u8], headers=auth), "INVALID_ARGUMENT", "UINT8", "accepted are")

    # Unknown model, keys and scopes.
    refused(lambda: g.get_model_metadata("no-such-model", headers=auth), "NOT_FOUND", "no-such-model")
    refused(
        lambda: g.infer("add", add_inputs(grpcclient, a, b), model_version="7", headers=auth),
        "NOT_FOUND", "no version", '"1"',
    )
    # A model that is known and pulled but cannot load: not ready, with the reason.
    refused(lambda: g.is_model_ready("bad", headers=auth), "UNAVAILABLE", "bad")
    refused(lambda: g.infer("add", add_inputs(grpcclient, a, b)), "UNAUTHENTICATED", "missing API key")
    refused(
        lambda: g.infer("add", add_inputs(grpcclient, a, b), headers={"authorization": "Bearer llmos-nope"}),
        "UNAUTHENTICATED",
    )
    lim = {"authorization": f"Bearer {limited}"}
    refused(
        lambda: g.infer("add", add_inputs(grpcclient, a, b), headers=lim),
        "PERMISSION_DENIED", "models:add",
    )
    refused(lambda: g.is_model_ready("add", headers=lim), "PERMISSION_DENIED", "models:add")
    check(g.is_model_ready("minilm", headers=lim), "limited key reaches minilm")
    refused(lambda: g.get_server_metadata(), "UNAUTHENTICATED")

    # The body limit of HTTP bounds a message: 3 MiB of FP32 is refused, and named.
    big = np.zeros((262_144, 3), dtype=np.float32)
    try:
        g.infer("add", add_inputs(grpcclient, big, big), headers=auth)
        check(False, "a message over the body limit was accepted")
    except InferenceServerException as e:
        check(
            str(e.status()) == "StatusCode.OUT_OF_RANGE"
            and "the limit is: 2097152 bytes" in (e.message() or ""),
            f"over the limit: {e.status()} {e.message()}",
        )

    g.close()
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
    print("ok")


def bench(n, grpc_url, http_url, key):
    auth = {"authorization": f"Bearer {key}"} if key else {}
    g = grpcclient.InferenceServerClient(url=grpc_url)
    h = httpclient.InferenceServerClient(url=http_url)
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((2, 3), 0.5, dtype=np.float32)
    for name, mod, client in (("gRPC", grpcclient, g), ("HTTP", httpclient, h)):
        for _ in range(20):  # warm-up
            client.infer("add", add_inputs(mod, a, b), headers=dict(auth))
        times = []
        for _ in range(n):
            t = time.perf_counter()
            client.infer("add", add_inputs(mod, a, b), headers=dict(auth))
            times.append(time.perf_counter() - t)
        times.sort()
        ms = [x * 1000 for x in times]
        print(
            f"{name}: {n} calls, mean {sum(ms) / n:.3f} ms, p50 {ms[n // 2]:.3f} ms, "
            f"p99 {ms[min(n - 1, (n * 99) // 100)]:.3f} ms"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bench":
        bench(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else None)
    else:
        main(*sys.argv[1:5])
