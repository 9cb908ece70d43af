/** The staplekeeper version (kept equal to package.json by a unit test). */
export const VERSION = '0.1.0';

/** The default User-Agent sent to responders (OCSP-REFERENCE §3). */
export const USER_AGENT = `staplekeeper/${VERSION}`;
