"""A small weather ETL on daskgif's retry/skip layer: no GIFs, no network.

Extract readings from three "stations" (CSV text kept in memory), one of which
drops the connection once and one of which is already cached; clean every
station's readings in a mapped task; aggregate the means.  Run it with::

    python examples/etl_weather.py [--scheduler sync|threads|processes]
"""

from __future__ import annotations

import argparse
import logging
import statistics
from collections import Counter

import dask

from daskgif.core.task import SKIPPED, Mapped, Skip, Task

SOURCES = {
    "oslo": "time,temp_f\n06:00,28.4\n12:00,35.6\n18:00,31.1\n",
    "lima": "time,temp_f\n06:00,62.6\n12:00,71.6\n18:00,bad\n",
    "pune": "time,temp_f\n06:00,77.0\n12:00,93.2\n18:00,86.0\n",
}
CACHE = {"pune": [("06:00", 25.0), ("12:00", 34.0), ("18:00", 30.0)]}  # already cleaned, in Celsius
attempts: Counter = Counter()  # per process: enough for retries, which happen in place


def list_stations() -> list[str]:
    """The station names; their number is known only when the graph runs."""
    return sorted(SOURCES)


def extract_station(station: str) -> str:
    """Read one station's CSV; "lima" drops the connection on the first attempt."""
    if station in CACHE:
        raise Skip("cached", result=CACHE[station])
    attempts[station] += 1
    if station == "lima" and attempts[station] == 1:
        raise ConnectionError(f"station {station!r} dropped the connection")
    return SOURCES[station]


def clean_readings(data: str | list) -> list[tuple[str, float]]:
    """Parse a CSV into (time, Celsius) pairs, dropping unreadable values; cached data passes."""
    if isinstance(data, list):
        return data
    rows = [line.split(",") for line in data.splitlines()[1:]]
    return [(t, round((float(f) - 32) * 5 / 9, 1)) for t, f in rows if f.replace(".", "", 1).isdigit()]


def clean_all(extracted: Mapped) -> Mapped:
    """Clean every station's readings, one mapped run per station."""
    return clean.map(extracted.values)


def aggregate(stations: list[str], cleaned: Mapped) -> dict[str, float]:
    """Mean temperature per station that produced readings."""
    return {s: statistics.fmean(v for _, v in values) for s, values in zip(stations, cleaned.values) if values}


extract = Task(extract_station, name="extract-station", retries=2, retry_delay=0.1)
clean = Task(clean_readings, name="clean-readings", skip_on_upstream_skip=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", default="threads", choices=["sync", "threads", "processes"])
    args = parser.parse_args()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")  # a script may configure the root logger

    stations = Task(list_stations, name="list-stations")()
    extracted = Task(extract.map, name="extract-stations")(stations)
    cleaned = Task(clean_all, name="clean-stations")(extracted)
    means = Task(aggregate, name="aggregate")(stations, cleaned)
    # A station that fails after its retries fails the run: dask.compute raises daskgif.RunFailed naming it.
    stations, extracted, cleaned, means = dask.compute(stations, extracted, cleaned, means, scheduler=args.scheduler)

    # A mapped task counts its items by state, and keeps the state of each item that was not a plain
    # success (skipped, failed, retried, with a message): those are printed one by one.
    for mapped in (extracted.value, cleaned.value):
        counts = ", ".join(f"{n} {state}" for state, n in sorted(mapped.states.counts.items()))
        print(f"{mapped.states.name}: {counts}")
        for s in mapped.states.values():
            detail = f" ({s.message})" if s.state == SKIPPED else f" after {s.attempts} attempts" * (s.attempts > 1)
            print(f"{s.name}[{s.index}] {stations.value[s.index]}: {s.state}{detail}")
    for station, mean in means.value.items():
        print(f"{station}: mean temperature {mean:.1f} C")
    print(f"all stations: mean temperature {statistics.fmean(means.value.values()):.1f} C")


if __name__ == "__main__":
    main()
