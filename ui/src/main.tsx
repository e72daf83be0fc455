import './locale';
import { render } from 'preact';
import { App } from './App';
import { makeBackend } from './lib/api';
import './styles.css';

const root = document.getElementById('app');
if (root) render(<App backend={makeBackend()} />, root);
