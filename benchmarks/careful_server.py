"""The server a careful user writes by hand: FastAPI + `transformers.pipeline`, each request's texts in one batch,
one forward pass at a time.

    python benchmarks/careful_server.py MODEL_FOLDER PORT MAX_LENGTH THREADS [fp32|bf16]

What makes it careful, against benchmarks/pipeline_server.py (the naive floor):
- the pipeline is called with `batch_size` equal to the request's number of texts: one padded forward pass per
  request, not one pass per text;
- the endpoint is `async` and hands the pass to a single worker thread, so passes never run side by side and fight
  over the cores (a plain `def` endpoint runs them in FastAPI's thread pool, many at once);
- torch uses THREADS threads (the cores), set once at start;
- `bf16`: the pipeline loads the weights as bfloat16 (`dtype=torch.bfloat16`), what a user with a bf16 CPU asks
  for; fp32 otherwise.

No batching across requests, no log: what a careful user writes in an afternoon. Bound to 127.0.0.1.
"""

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline

folder, port, max_length, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
precision = sys.argv[5] if len(sys.argv) > 5 else "fp32"
torch.set_num_threads(threads)
pipe = pipeline("text-classification", model=folder, device="cpu",
                dtype=torch.bfloat16 if precision == "bf16" else torch.float32)
worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")  # one pass at a time
# torch's intra-op thread count holds per thread: set it in the worker too
worker.submit(torch.set_num_threads, threads).result()
worker.submit(pipe, ["warm up"], truncation=True, max_length=max_length).result()
app = FastAPI()


class Texts(BaseModel):
    texts: list[str]


def classify(texts: list[str]) -> list[dict]:
    with torch.inference_mode():
        return pipe(texts, batch_size=len(texts), truncation=True, max_length=max_length)


@app.post("/v1/predict")
async def predict(body: Texts) -> dict:
    predictions = await asyncio.get_running_loop().run_in_executor(worker, classify, body.texts)
    return {"predictions": predictions}


@app.get("/readyz")
async def ready() -> dict:
    return {"ready": True}


uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
