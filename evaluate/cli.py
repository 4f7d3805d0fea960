"""`hkd-eval` command line."""
import click


@click.group()
@click.version_option(package_name="hkdsme")
def main():
    """Evaluate checkpoints and predict melodies."""


if __name__ == "__main__":
    main()
