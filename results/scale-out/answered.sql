-- After kill9.sh, id by id: every device id the generator was answered (its identities.csv)
-- against the database. Run by answered.sh, which loads identities.csv into `answered` first:
--   results/scale-out/answered.sh /tmp/scale-out/kill9-run/kill9-*/
\echo 'device ids the generator was answered:'
SELECT count(*) FROM answered;
\echo 'of them, not the device id of a stored record (must be 0):'
SELECT count(*) FROM answered a
 WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.value::json->>'device_id' = a.device_id);
\echo 'of them, not held in identities by that record with its identity certificate (must be 0):'
SELECT count(*) FROM answered a
 WHERE NOT EXISTS (SELECT 1 FROM records r, identities i, json_array_elements(i.holders::json) h
                    WHERE r.value::json->>'device_id' = a.device_id
                      AND i.device_id = a.device_id AND h->>'record' = r.key
                      AND h->>'certificate' = r.value::json->>'identity_certificate');
\echo 'device ids answered to two devices (must be 0):'
SELECT count(*) FROM (SELECT device_id FROM answered GROUP BY 1 HAVING count(*) > 1) d;
