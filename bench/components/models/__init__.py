"""Models: building them by name (bench, timm, torchvision or a user factory), their stages for
freezing and per-layer LRs, local weight files, and the input statistics their weights expect.

    build.py               names -> modules, heads sized for the data
    torchvision_models.py  ``torchvision:<name>``: head replacement and family stages
    stages.py              classifier head and stages, stem first, head last
    weights.py             state-dict files and their ``PATH.json`` normalisation sidecar
    stats.py               ``pretrained_stats``: mean/std the starting weights expect
    cifar_resnet.py, airbench.py   bench's own CIFAR networks
"""

from bench.components.models.build import MODELS, build_model, check_model_name, count_parameters
from bench.components.models.stages import model_stages
from bench.components.models.stats import pretrained_stats
from bench.components.models.torchvision_models import PREFIX as TORCHVISION_PREFIX
from bench.components.models.weights import load_weights, write_weights_meta

__all__ = ["MODELS", "TORCHVISION_PREFIX", "build_model", "check_model_name", "count_parameters", "load_weights",
           "model_stages", "pretrained_stats", "write_weights_meta"]  # fmt: skip
