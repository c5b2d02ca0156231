package dbfleet.testserver;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.QueryExecutionException;
import org.neo4j.io.ByteUnit;

/**
 * Runs one or more embedded Neo4j Community DBMS instances, each with its own
 * home directory and a Bolt connector on 127.0.0.1, until SIGTERM.
 *
 * <p>Usage: {@code java -cp CLASSPATH dbfleet.testserver.Launcher HOME PORT [HOME PORT ...]}.
 * Several instances in one JVM give the tests a second server (Community has a
 * single user database per DBMS, so a restore "next to" the source needs one).
 *
 * <p>Authentication is on. The password of user {@code neo4j} comes from the
 * file named by {@code NEO4J_LAUNCHER_PASSWORD_FILE} (never from the command
 * line, where every local user could read it) and is set on every start via
 * the system database. The shutdown hook stops every instance cleanly, so the
 * stores can be dumped by neo4j-admin afterwards.
 */
public final class Launcher {
    private Launcher() {}

    public static void main(String[] args) throws Exception {
        if (args.length == 0 || args.length % 2 != 0) {
            System.err.println("usage: Launcher HOME PORT [HOME PORT ...]");
            System.exit(2);
        }
        String password = readPassword();
        List<DatabaseManagementService> services = new ArrayList<>();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            for (DatabaseManagementService service : services) {
                try {
                    service.shutdown();
                } catch (RuntimeException e) {
                    System.err.println("shutdown failed: " + e);
                }
            }
            System.err.println("launcher: stopped");
            stopped.countDown();
        }));
        try {
            start(args, password, services);
        } catch (Exception e) {
            e.printStackTrace();
            System.err.println("launcher: failed to start: " + e.getMessage());
            System.exit(1); // runs the shutdown hook: instances already up stop cleanly
        }
        System.err.println("launcher: all ready");
        stopped.await();
    }

    private static void start(String[] args, String password, List<DatabaseManagementService> services)
            throws IOException {
        for (int i = 0; i < args.length; i += 2) {
            Path home = Path.of(args[i]).toAbsolutePath();
            int port = Integer.parseInt(args[i + 1]);
            Files.createDirectories(home);
            DatabaseManagementService service = new DatabaseManagementServiceBuilder(home)
                    .setConfig(BoltConnector.enabled, true)
                    .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                    .setConfig(BoltConnector.advertised_address, new SocketAddress("127.0.0.1", port))
                    .setConfig(GraphDatabaseSettings.auth_enabled, true)
                    .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(128))
                    // Small transaction logs: a test server, not a production one.
                    .setConfig(GraphDatabaseSettings.keep_logical_logs, "false")
                    .build();
            synchronized (services) {
                services.add(service);
            }
            setPassword(service, password);
            System.err.println("launcher: ready " + home + " bolt://127.0.0.1:" + port);
        }
    }

    /**
     * Community has user management (not roles): set the password of the
     * built-in admin user and clear its change-on-first-login flag. On a
     * restart the password is usually set already, which Neo4j refuses to
     * "change" to the same value: that is success too.
     */
    private static void setPassword(DatabaseManagementService service, String password) {
        try {
            service.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME).executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED",
                    Map.of("password", password));
        } catch (QueryExecutionException e) {
            if (!String.valueOf(e.getMessage()).contains("cannot be the same")) {
                throw e;
            }
        }
    }

    private static String readPassword() throws IOException {
        String file = System.getenv("NEO4J_LAUNCHER_PASSWORD_FILE");
        if (file == null || file.isEmpty()) {
            throw new IllegalStateException("set NEO4J_LAUNCHER_PASSWORD_FILE to a file with the password");
        }
        String password = Files.readString(Path.of(file), StandardCharsets.UTF_8).strip();
        if (password.length() < 8) {
            throw new IllegalStateException("the password must have at least 8 characters");
        }
        return password;
    }
}
