"""Caption a dataset across a Ray cluster (needs the ``ray`` extra: ``pip install 'vlmcap[ray]'``).

One long-lived engine actor per GPU (each holding a :class:`vlmcap.Captioner`), a pool of CPU
decoder actors that decode and preprocess files, and a driver that writes rows to the main
job's resumable output as they finish::

    from vlmcap.ray import RayOptions, caption_paths_ray, init_ray

    init_ray()  # or init_ray("ray://head:10001")
    for row in caption_paths_ray(videos, config, out="captions.jsonl",
                                 options=RayOptions(engines=8)):
        ...

``vlmcap caption ... --ray [--address ADDR] [--ray-engines N]`` does the same.
"""

from vlmcap.ray._actors import EngineFactory as EngineFactory
from vlmcap.ray._job import (
    ClusterError as ClusterError,
    RayOptions as RayOptions,
    caption_paths_ray as caption_paths_ray,
    default_engines as default_engines,
    init_ray as init_ray,
)


__all__ = [
    "ClusterError",
    "EngineFactory",
    "RayOptions",
    "caption_paths_ray",
    "default_engines",
    "init_ray",
]
