-- The municipal counter (窓口) residents the kiosk sends away apply at
-- (issue 15): the kiosk's counter-only message names it. Empty when the
-- municipality gave none; existing rows keep working unchanged.
ALTER TABLE municipalities
    ADD COLUMN counter_ja text NOT NULL DEFAULT '',
    ADD COLUMN counter_en text NOT NULL DEFAULT '';
