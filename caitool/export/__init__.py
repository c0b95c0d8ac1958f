"""Publishing caitool outputs as a dataset: Parquet configurations per kind and split, a dataset card whose
provenance comes from the manifests, and an optional Hugging Face Hub upload (docs/export.md).

    rows.py        kinds recognised by shape, columns, prompt groups for splits, per-row statistics
    provenance.py  the manifests beside each file and upstream, redacted; the mixed-settings check
    card.py        README.md: the YAML header and the text, filled into dataset_card.md
    dataset.py     export_dataset: checks, splits, Parquet shards, card, provenance.json, atomic rename
    hub.py         push_folder: one commit to a Hub dataset repository

pyarrow, PyYAML and huggingface_hub (the `export` extra) are imported inside the functions that use them.
"""
