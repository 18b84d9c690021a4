"""Stand-ins for modules that only Kaggle's image ships; the sandbox puts this folder on the kernel's ``sys.path``."""
