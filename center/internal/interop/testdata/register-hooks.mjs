// Loaded with node --import: installs esm-hooks.mjs.
import { register } from 'node:module';

register('./esm-hooks.mjs', import.meta.url);
