"""The anchor of the serving benchmark: the server a user writes by hand — FastAPI + `transformers.pipeline`, one
pipeline call per request, no batching across requests, no log.

    python benchmarks/pipeline_server.py MODEL_FOLDER PORT MAX_LENGTH THREADS

A plain `def` endpoint, as in FastAPI's and Hugging Face's examples: FastAPI runs it in its thread pool, so
concurrent requests call the pipeline from several threads at once. Same model folder, max_length and torch
threads as thrifty's server; bound to 127.0.0.1.
"""

import sys

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline

folder, port, max_length, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
pipe = pipeline("text-classification", model=folder, device="cpu")
pipe(["warm up"], truncation=True, max_length=max_length)
app = FastAPI()


class Texts(BaseModel):
    texts: list[str]


@app.post("/v1/predict")
def predict(body: Texts) -> dict:
    return {"predictions": pipe(body.texts, truncation=True, max_length=max_length)}


@app.get("/readyz")
def ready() -> dict:
    return {"ready": True}


uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
