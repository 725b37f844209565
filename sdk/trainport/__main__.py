"""`python -m trainport ...` is the `trainport` command."""

from trainport.cli import main

if __name__ == "__main__":
    main()
