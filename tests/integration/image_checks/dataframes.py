"""The data stack of IMAGE_EXTRAS=dataframes doing real work inside the image (stripped libraries, no test
suites, read-only root): polars writes and reads a Delta table, pyarrow a Parquet file, duckdb queries a
pandas frame that pandera has validated, zstandard round-trips. Prints one line of results."""

import tempfile
import duckdb
import pandas
import pandera.pandas as pandera
import polars
import pyarrow
import pyarrow.parquet
import zstandard

with tempfile.TemporaryDirectory() as scratch:
    frame = polars.DataFrame({"id": [1, 2, 3], "amount": [10.0, 20.5, 30.25]})
    frame.write_delta(f"{scratch}/delta")
    delta_total = polars.read_delta(f"{scratch}/delta")["amount"].sum()

    pyarrow.parquet.write_table(pyarrow.table({"id": [1, 2, 3]}), f"{scratch}/ids.parquet")
    parquet_rows = pyarrow.parquet.read_table(f"{scratch}/ids.parquet").num_rows

payments = pandera.DataFrameSchema({"amount": pandera.Column(float, pandera.Check.ge(0))}).validate(
    pandas.DataFrame({"amount": [1.5, 2.5]}))
duckdb_total = duckdb.sql("select sum(amount) from payments").fetchall()[0][0]
text = b"prefect " * 100
roundtrip = zstandard.ZstdDecompressor().decompress(zstandard.ZstdCompressor().compress(text)) == text

print(f"delta={delta_total} parquet={parquet_rows} duckdb={duckdb_total} zstd={roundtrip}")
