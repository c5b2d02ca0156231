"""Neo4j's own "Movies" example graph (``:play movies``; see PROVENANCE.md):
Movie and Person nodes, ACTED_IN with role lists, DIRECTED, PRODUCED,
WROTE, FOLLOWS and REVIEWED with summaries and ratings; with the
constraint and index the guide's readers add. Backed up logically,
restored whole and label by label, compared through the driver, verified
by fingerprint."""

from __future__ import annotations

from pathlib import Path

from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.neo4j import Neo4jEngine
from tests.generated.roundtrip import backed_up, restore_as
from tests.generated.test_neo4j_generated import contents
from tests.integration.fixtures_neo4j import Neo4jServer

MOVIES = Path(__file__).parent / "neo4j" / "movies.cypher"


def test_movies_graph_round_trip(neo4j_server: Neo4jServer) -> None:
    server = neo4j_server
    server.run(MOVIES.read_text())
    server.run("CREATE CONSTRAINT movie_title FOR (m:Movie) REQUIRE m.title IS UNIQUE")
    server.run("CREATE INDEX person_name FOR (p:Person) ON (p.name)")
    server.run("CALL db.awaitIndexes(300)")
    counts = server.run("MATCH (n) WITH count(n) AS n MATCH ()-[r]->() RETURN n, count(r) AS r")
    assert counts == [{"n": 171, "r": 253}]
    repo, snapshot = backed_up(Neo4jEngine(server.config()))
    assert snapshot.fingerprint is not None
    assert {"Movie", "Person", "[ACTED_IN]", "[REVIEWED]"} <= set(snapshot.fingerprint["tables"])

    scratch = server.config(server.scratch_url)
    whole = restore_as(Neo4jEngine, repo, snapshot, scratch)
    assert contents(server, server.scratch_url) == contents(server)
    assert compare_fingerprints(snapshot.fingerprint, whole.fingerprint()) == []
    keanu = "MATCH (:Person {name: 'Keanu Reeves'})-[r:ACTED_IN]->(:Movie {title: 'The Matrix'})"
    server.run(keanu + " SET r.roles = r.roles + 'The One'", server.scratch_url)
    differences = compare_fingerprints(snapshot.fingerprint, whole.fingerprint())
    assert [d.split(": ")[0] for d in differences] == ["[ACTED_IN]"], differences

    for label in ("Movie", "Person"):
        server.clear(server.scratch_url)
        subset = restore_as(Neo4jEngine, repo, snapshot, scratch, tables=(label,))
        assert contents(server, server.scratch_url, label) == contents(server, label=label)
        tables = (label,)
        assert compare_fingerprints(snapshot.fingerprint, subset.fingerprint(tables), tables) == []
