"""Every environment variable the kit reads or sets, named once: Kaggle's own, the client's, and the kit's.

The offline sandbox sets the ``KAGGLE_KIT_SIM_*`` variables for a session and the guard reads them, so both take the
names from here. (The ``kaggle_secrets`` stand-in that runs inside a session cannot import the kit and spells its two
names itself.)
"""

from __future__ import annotations

# Set by Kaggle inside a notebook session.
KERNEL_RUN_TYPE = "KAGGLE_KERNEL_RUN_TYPE"  # "Interactive" or "Batch"
URL_BASE = "KAGGLE_URL_BASE"
USER_SECRETS_TOKEN = "KAGGLE_USER_SECRETS_TOKEN"
DATA_PROXY_URL = "KAGGLE_DATA_PROXY_URL"
DATA_PROXY_TOKEN = "KAGGLE_DATA_PROXY_TOKEN"
DATA_PROXY_PROJECT = "KAGGLE_DATA_PROXY_PROJECT"
KERNEL_INTEGRATIONS = "KAGGLE_KERNEL_INTEGRATIONS"

# Read by the official client.
USERNAME = "KAGGLE_USERNAME"
KEY = "KAGGLE_KEY"
API_TOKEN = "KAGGLE_API_TOKEN"
CONFIG_DIR = "KAGGLE_CONFIG_DIR"
API_ENVIRONMENT = "KAGGLE_API_ENVIRONMENT"  # LOCALHOST points the client at http://localhost

# The kit's own.
KIT_ROOT = "KAGGLE_KIT_ROOT"  # overrides find_root
KIT_PROJECT = "KAGGLE_KIT_PROJECT"  # the project find_root looks for (set by a rendered notebook's bootstrap)
KIT_KAGGLE_ROOT = "KAGGLE_KIT_KAGGLE_ROOT"  # moves the whole /kaggle tree (tests, the sandbox's fallback)
KIT_API_ENDPOINT = "KAGGLE_KIT_API_ENDPOINT"  # points the kit's in-process client at a stand-in
KIT_SESSION_START = "KAGGLE_KIT_SESSION_START"  # inherited by DDP ranks: count from the kernel's start
SIM_ACCELERATOR = "KAGGLE_KIT_SIM_ACCELERATOR"
SIM_SESSION_START = "KAGGLE_KIT_SIM_SESSION_START"
SIM_SESSION_LIMIT_S = "KAGGLE_KIT_SIM_SESSION_LIMIT_S"
SIM_QUOTA_LEFT_S = "KAGGLE_KIT_SIM_QUOTA_LEFT_S"
SIM_ISOLATION = "KAGGLE_KIT_SIM_ISOLATION"
SIM_SECRETS_FILE = "KAGGLE_KIT_SIM_SECRETS_FILE"
