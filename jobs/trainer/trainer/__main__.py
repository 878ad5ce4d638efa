"""`python -m trainer --mode train|forecast ...` (see `trainer.cli`)."""

from trainer.cli import main

if __name__ == "__main__":
    main()
