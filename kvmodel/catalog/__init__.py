"""Layer 1: the catalog — hardware entries of ``hardware_db`` (GPUs, links, memories, nodes,
frameworks, calibration; :mod:`.hardware`) and model architectures (:mod:`.models`), held by a
:class:`Catalog` that every cache is keyed on. ``Catalog.default()`` is the bundled database;
``cat.with_file(path)`` returns a new catalog with a user's file added."""

from kvmodel.catalog.hardware import (
    Catalog,
    ConnectorSpec,
    FrameworkSpec,
    GPUSpec,
    HardwareDBError,
    LinkSpec,
    MemorySpec,
    NodeSpec,
    Quantity,
    catalog_arg,
    current,
    data_dir,
    get_calibration,
    get_connector,
    get_framework,
    get_gpu,
    get_link,
    get_memory,
    get_node,
    list_entries,
    load_hardware,
    raw_entry,
    reset_catalog,
    use_catalog,
)
from kvmodel.catalog.models import (
    BYTES_PER_ELEMENT,
    ModelSpec,
    get_model,
    kv_bytes_per_token,
    list_models,
    load_hf_config,
)

__all__ = ["Catalog", "use_catalog", "current", "catalog_arg", "load_hardware", "reset_catalog",
           "data_dir", "raw_entry", "list_entries", "get_gpu", "get_link", "get_memory", "get_node",
           "get_framework", "get_connector", "ConnectorSpec", "get_calibration", "GPUSpec",
           "LinkSpec", "MemorySpec", "NodeSpec",
           "FrameworkSpec", "HardwareDBError", "Quantity", "ModelSpec", "get_model", "list_models",
           "load_hf_config", "kv_bytes_per_token", "BYTES_PER_ELEMENT"]
