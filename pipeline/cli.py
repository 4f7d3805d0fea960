"""`hkd-prep` command line."""
import click


@click.group()
@click.version_option(package_name="hkdsme")
def main():
    """Prepare features: datasets → CFP + labels → HDF5 shards."""


if __name__ == "__main__":
    main()
