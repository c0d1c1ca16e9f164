"""Test configuration: fixtures live in tests/fixtures/, one module per service or data kind."""

pytest_plugins = [
    "tests.fixtures.gcs",
    "tests.fixtures.pushgateway",
    "tests.fixtures.slides",
    "tests.fixtures.tiling",
    "tests.fixtures.kfp_api",
    "tests.fixtures.k8s_api",
    "tests.fixtures.shards",
    "tests.fixtures.lineage",
    "tests.fixtures.distill",
]
