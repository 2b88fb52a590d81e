# animagent for NVIDIA GPUs. Weights are mounted at run time, never baked in:
#   docker build -t animagent .
#   docker run --gpus all -v $PWD/weights:/weights -v $PWD/runs:/runs -v $PWD/stories:/stories \
#       -v animagent-cache:/cache animagent run /stories/story.txt --out /runs/story
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    ANIMAGENT_WEIGHTS=/weights

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/animagent \
    && useradd --create-home --uid 1000 animagent \
    && install -d -o animagent /cache
# torch.compile's kernels (the video model's blocks: ~20-28 s to compile on a fresh cache) are kept on the /cache
# volume, so the next container's first clip reads them instead of compiling again.
ENV PATH=/opt/animagent/bin:$PATH \
    TORCHINDUCTOR_CACHE_DIR=/cache/torchinductor

WORKDIR /src
COPY pyproject.toml README.md ./
COPY animagent ./animagent
# PyPI's Linux torch wheels are CUDA builds; vLLM stays optional (`animagent[vllm]`, or the compose director).
# EXTRAS picks extras: `--build-arg EXTRAS=ray` for the Ray nodes of docker-compose.ray.yml.
ARG EXTRAS=""
RUN pip install --upgrade pip && pip install ".${EXTRAS:+[$EXTRAS]}"

USER animagent
WORKDIR /runs
VOLUME ["/weights", "/runs", "/cache"]
ENTRYPOINT ["animagent"]
CMD ["--help"]
