ALTER TABLE todos ADD COLUMN done boolean;
