from dbfleet.cli.main import run

run()
