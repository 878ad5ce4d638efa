"""`python -m trainer --mode train|forecast ...` (see `trainer.run.cli`)."""

from trainer.run.cli import main

if __name__ == "__main__":
    main()
