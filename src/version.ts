/** The staplekeeper version (kept equal to package.json by a unit test). */
export const VERSION = '0.1.0';

/** The default User-Agent sent to responders (RFC 6960 §4.1, RFC 5019 §5). */
export const USER_AGENT = `staplekeeper/${VERSION}`;
