"""Sums 0..9 with Spark and writes the result to the file named second. The first argument is the Spark Connect
URL (sc://host:port), or `local` to run Spark inside the container. A file, because Spark's logs and progress
bars share the container's output with anything printed. A script file, not `python -c`: pyspark takes a
__main__ without a file for its own doctests and exits."""

import sys

from pyspark.sql import SparkSession

builder = SparkSession.builder
spark = (builder.master("local[1]") if sys.argv[1] == "local" else builder.remote(sys.argv[1])).getOrCreate()
result = spark.range(10).selectExpr("sum(id)").collect()[0][0]
spark.stop()
with open(sys.argv[2], "w") as out:
    out.write(str(result))
