-- llmos store on PostgreSQL, version 2: notifications of the collection trees name what
-- changed, so a replica follows one collection's changes instead of reloading every
-- collection (docs/scale-out.md, "Following collections").
--   chunks:      'chunks P <hex of the stored key>' (put) or 'chunks D <hex>' (removed): one
--                notification per row; the first 16 bytes of the key are the collection's
--                keyed namespace hash, the rest the chunk's keyed hash (no clear name).
--   collections: 'collections P <hex of the namespace hash>' or 'collections D <hex>'
--                (folded per transaction, like every identical notification).
-- Every other tree still sends its bare name.
CREATE OR REPLACE FUNCTION llmos_kv_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t text;
    k bytea;
    op text := 'P';
BEGIN
    IF TG_OP = 'DELETE' THEN
        t := OLD.tree; k := OLD.key; op := 'D';
    ELSE
        t := NEW.tree; k := NEW.key;
    END IF;
    IF t = 'chunks' AND length(k) = 32 THEN
        PERFORM pg_notify('llmos_changes', t || ' ' || op || ' ' || encode(k, 'hex'));
    ELSIF t = 'collections' AND length(k) = 32 THEN
        PERFORM pg_notify('llmos_changes', t || ' ' || op || ' ' || encode(substring(k FROM 1 FOR 16), 'hex'));
    ELSE
        PERFORM pg_notify('llmos_changes', t);
    END IF;
    RETURN NULL;
END;
$$;
