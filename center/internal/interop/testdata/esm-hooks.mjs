// Module resolution hook for @pathcheck/vds-sdk's ES module sources: they
// import siblings without the ".js" extension ("./key-parser"), which
// bundlers accept and Node's ES module loader does not. The package's
// CommonJS entry (lib/index.js, through the "esm" loader) crashes on Node 20,
// so the runner loads lib/main.js directly and this hook supplies the
// missing extension. Nothing else is changed.
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    if (err && err.code === 'ERR_MODULE_NOT_FOUND' && /^\.\.?\//.test(specifier) && !specifier.endsWith('.js')) {
      return next(specifier + '.js', context);
    }
    throw err;
  }
}
