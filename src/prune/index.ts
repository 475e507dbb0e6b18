/** Pruning library API: schedules, layer selectors, masks, physical structured removal, statistics. */
export * from './schedule.js';
export * from './selectors.js';
export * from './masks.js';
export * from './structured.js';
export * from './stats.js';
export * from './methods.js';
