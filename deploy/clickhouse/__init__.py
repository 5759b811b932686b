"""columnist's ClickHouse DDL (schema.sql), shipped inside the package as ``columnist.ddl``."""
