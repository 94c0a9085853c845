// ESLint for the web pages (api/static): ES modules in the browser, the service worker a
// classic script; and the test OpenID Provider on Node. Run by `./dev test` from the root:
//   tests/eslint/node_modules/.bin/eslint --config tests/eslint/eslint.config.js api/static tests/oidc
import js from "@eslint/js";
import globals from "globals";

const markup = "builds markup from a string: use el()/textContent (core.js), never HTML";

export default [
  {
    files: ["api/static/**/*.js"],
    ...js.configs.recommended,
    languageOptions: {
      ecmaVersion: 2024,
      sourceType: "module",
      globals: { ...globals.browser },
    },
    rules: {
      ...js.configs.recommended.rules,
      eqeqeq: ["error", "smart"],  // `x == null` for null-or-undefined only
      "no-var": "error",
      "prefer-const": "error",
      "no-unused-vars": ["error", { caughtErrors: "none" }],
      "no-implicit-globals": "error",
      "no-restricted-syntax": [
        "error",
        { selector: "AssignmentExpression > MemberExpression.left[property.name=/^(innerHTML|outerHTML)$/]", message: markup },
        { selector: "CallExpression[callee.property.name=/^(insertAdjacentHTML|write|writeln)$/]", message: markup },
      ],
    },
  },
  {
    files: ["api/static/sw.js"],
    languageOptions: { sourceType: "script", globals: { ...globals.serviceworker } },
  },
  {
    // The test OpenID Provider (tests/oidc), on Node.
    files: ["tests/oidc/**/*.mjs"],
    ...js.configs.recommended,
    languageOptions: { ecmaVersion: 2024, sourceType: "module", globals: { ...globals.node } },
    rules: { ...js.configs.recommended.rules, eqeqeq: ["error", "smart"], "no-var": "error", "prefer-const": "error" },
  },
];
