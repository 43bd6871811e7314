// {{name}}: a Hypergraph task in JavaScript (see README.md).
import { context, log } from 'hypergraph-guest';
{{#workflow}}
import * as workflow from 'hypergraph-guest/workflow';
{{/workflow}}

export function greet(name) {
  log.info(`greeting ${name} (attempt ${context.attempt()})`);
  console.log(`Hello, ${name}!`); // console lines become log lines of the run
  return `Hello, ${name}!`;
}
{{#workflow}}

export function greetAll(names) {
  // Children are tasks of this deployment: `<deployment>/greet`.
  const deployment = context.taskName().split('/')[0];
  return workflow.join(workflow.startAll(`${deployment}/greet`, names));
}
{{/workflow}}
