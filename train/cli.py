"""`hkd-train` command line."""
import click


@click.group()
@click.version_option(package_name="hkdsme")
def main():
    """Train the teacher and distil the student."""


if __name__ == "__main__":
    main()
