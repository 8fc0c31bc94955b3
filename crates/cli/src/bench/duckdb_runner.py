# Runs the benchmark's questions in DuckDB over the Parquet files of the warehouse's Delta
# tables (a fresh load: every file in a table folder is current), in the same run as Prism.
# Input on stdin: {"tables": {name: folder}, "queries": [{"name", "sql"}], "runs": N}.
# Output on stdout: {"duckdb": version, "results": [{"name", "times": [s, ...], "rows": [[str]]}]}.
import json, sys, time
import duckdb

job = json.load(sys.stdin)
con = duckdb.connect()
# Service requests open on their UTC date, as in Prism.
con.execute("SET TimeZone = 'UTC'")
for name, folder in job["tables"].items():
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{folder}/*.parquet')")
results = []
for q in job["queries"]:
    times, rows = [], None
    for _ in range(job["runs"]):
        start = time.perf_counter()
        rows = con.execute(q["sql"]).fetchall()
        times.append(time.perf_counter() - start)
    cells = [["" if v is None else str(v) for v in r] for r in rows]
    results.append({"name": q["name"], "times": times, "rows": cells})
json.dump({"duckdb": duckdb.__version__, "results": results}, sys.stdout)
