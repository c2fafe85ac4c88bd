"""File names and limits of the on-disk formats (a zoo folder; see ``zoo.py`` for its layout)."""

ZOO_FORMAT_VERSION = 2  # 2: manifest.json (artifacts.py), one dtype recorded in zoo.json
ZOO_CONFIG_NAME = "zoo.json"
METADATA_NAME = "metadata.parquet"
CHECKPOINT_DIR = "checkpoints"
CARD_NAME = "README.md"
CARD_FILES = (CARD_NAME, ".gitattributes")  # documentation Hub users edit: never hashed or verified
MANIFEST_NAME = "manifest.json"  # every artifact's completion marker (artifacts.py)
VERIFIED_NAME = ".dwf_verified.json"  # which files this machine hashed against the manifest (artifacts.py)
UNSEALED_FILES = (*CARD_FILES, VERIFIED_NAME)  # never listed in a manifest, never verified
METADATA_FILES = [ZOO_CONFIG_NAME, METADATA_NAME, CARD_NAME, MANIFEST_NAME]
JOB_FILE = ".dwf_job.json"  # an unfinished `train_zoo` job (the zoo folder it trains into)
SHARD_KEY = "dwf_shard"  # packed shard header: {"first_model_id": i, "count": n}
SHARD_ROW_COLUMN = "shard_row"  # a packed zoo's row: its network's index inside its shard
RECORD_KEY = "dwf_record"  # safetensors header key holding the model's metadata row as JSON
WEIGHTS_COLUMN = "weights"  # flat float32 weights in the metadata table, for small architectures
WEIGHTS_COLUMN_MAX_PARAMS = 65_536
