// Command ferretdb-launcher runs FerretDB v1 (the MongoDB wire protocol over
// SQLite or PostgreSQL) as dbfleet's MongoDB test server.
//
// FerretDB's own command cannot be built with `go install` (its version
// package expects a file that only the project's release build generates and
// panics without it), so this program imports the embeddable package
// github.com/FerretDB/FerretDB/ferretdb instead. It is started by
// scripts/servers/mongodb.sh and runs until SIGTERM or SIGINT.
//
// The embeddable package accepts any credentials with the PLAIN mechanism and
// does not check them against the SQLite backend (no users exist there): the
// tests exercise how dbfleet hands a password to the tools, not a rejection.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:17017", "TCP address to listen on")
	handler := flag.String("handler", "sqlite", "backend: sqlite or postgresql")
	sqliteURL := flag.String("sqlite-url", "file:data/", "SQLite URI of the data directory (sqlite handler)")
	postgresqlURL := flag.String("postgresql-url", "", "PostgreSQL URL (postgresql handler)")
	level := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	var logLevel slog.Level
	if err := logLevel.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-launcher: bad -log-level: %v\n", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listen},
		Logger:        logger,
		Handler:       *handler,
		SQLiteURL:     *sqliteURL,
		PostgreSQLURL: *postgresqlURL,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-launcher: %v\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	logger.Warn("FerretDB starting", "listen", *listen, "handler", *handler)
	if err := f.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-launcher: %v\n", err)
		os.Exit(1)
	}
}
