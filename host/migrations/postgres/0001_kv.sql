-- llmos store on PostgreSQL, version 1: the trees of the storage interface
-- (host/src/data/backend.rs) as one table of opaque, already sealed bytes.
-- bytea compares bytewise, so `ORDER BY key` is the order the interface promises.
CREATE TABLE llmos_kv (
    tree  text  NOT NULL,
    key   bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tree, key)
);

-- Backend::generate_id: monotonic across replicas and restarts.
CREATE SEQUENCE llmos_ids AS bigint MINVALUE 0 START WITH 0;

-- Change propagation: every committed write tells listening replicas which tree changed
-- (PostgreSQL folds identical notifications of one transaction into one).
CREATE FUNCTION llmos_kv_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('llmos_changes', OLD.tree);
    ELSE
        PERFORM pg_notify('llmos_changes', NEW.tree);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER llmos_kv_changed AFTER INSERT OR UPDATE OR DELETE ON llmos_kv
    FOR EACH ROW EXECUTE FUNCTION llmos_kv_notify();
