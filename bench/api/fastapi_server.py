"""A simple per-request embedding server, written the way a user would without batching:
FastAPI + uvicorn (1 worker) + onnxruntime + tokenizers, one `session.run` per request.

Same model files as llmos (`~/.local/share/llmos/models/minilm/`), mean pooling + L2
normalisation, longest padding + truncation to 256 tokens, `intra_op_num_threads` = 2
(env INTRA_THREADS). Answers `POST /v1/embeddings` with OpenAI's response shape.

Env MODE selects the handler style:
  sync  (default) a plain `def` handler: FastAPI runs it in its thread pool, so several
        requests may be in `session.run` at once (the style FastAPI recommends for blocking code);
  async an `async def` handler: requests run one at a time on the event loop.

Run: MODEL_DIR=... uvicorn --app-dir bench/api fastapi_server:app --host 127.0.0.1 --port 8091 --workers 1
"""

import os
from typing import List, Union

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel
from tokenizers import Tokenizer

MODEL_DIR = os.environ.get(
    "MODEL_DIR", os.path.expanduser("~/.local/share/llmos/models/minilm"))
THREADS = int(os.environ.get("INTRA_THREADS", "2"))
MODE = os.environ.get("MODE", "sync")

opts = ort.SessionOptions()
opts.intra_op_num_threads = THREADS
session = ort.InferenceSession(
    os.path.join(MODEL_DIR, "model.onnx"), opts, providers=["CPUExecutionProvider"])
input_names = {i.name for i in session.get_inputs()}
output_name = session.get_outputs()[0].name

tokenizer = Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # longest in the request
tokenizer.enable_truncation(256)


def embed(texts):
    encs = tokenizer.encode_batch(texts)
    feeds = {
        "input_ids": np.array([e.ids for e in encs], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64),
    }
    feeds = {k: v for k, v in feeds.items() if k in input_names}
    (hidden,) = session.run([output_name], feeds)
    mask = feeds["attention_mask"].astype(np.float32)[:, :, None]
    pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    tokens = int(feeds["attention_mask"].sum())
    return pooled, tokens


class EmbeddingRequest(BaseModel):
    model: str
    input: Union[str, List[str]]


def answer(req: EmbeddingRequest):
    texts = [req.input] if isinstance(req.input, str) else req.input
    vectors, tokens = embed(texts)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v.tolist()}
                 for i, v in enumerate(vectors)],
        "model": req.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


app = FastAPI()

if MODE == "async":
    @app.post("/v1/embeddings")
    async def embeddings(req: EmbeddingRequest):
        return answer(req)
else:
    @app.post("/v1/embeddings")
    def embeddings(req: EmbeddingRequest):
        return answer(req)
